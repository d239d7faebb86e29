"""The Prefect UI as a user drives it: headless Chromium (Debian's package) through selenium opens the
distill-student deployment's run form, fills it, submits it; a real process worker runs the flow; the flow
run page shows it completed and the loss-curve artifact renders its image. Screenshots go to the test's
temp directory (`shots/`, printed at the end). `make e2e` runs this file alone."""

import asyncio
import json
import shutil
import time

import pytest

from tests.prefect_server import deploy, running_prefect, wait_for_run

pytestmark = pytest.mark.slow
POOL = "browser-pool"
SETTINGS = {"num_frames": 2, "batch_size": 1, "windows_per_clip": 1, "shuffle_buffer": 4, "solver_steps_per_window": 1}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver_path):
        pytest.skip("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver; "
                    "infra/install-test-services.sh does it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1400",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    with running_prefect(home, pools=[POOL]) as (api, _):
        yield api


@pytest.fixture(scope="module")
def teacher_and_data(tmp_path_factory):
    from fada.config import load_config
    from fada.train_teacher import train_teacher
    from shards.synthetic_dataset import make_speaker_data_dir

    root = tmp_path_factory.mktemp("ui")
    data = make_speaker_data_dir(root / "data", n_clips=2, size=32, duration_s=1.0, view="lenient")
    config = load_config("tiny")
    config["train"].update(num_frames=2, batch_size=1, windows_per_clip=1, shuffle_buffer=4)
    train_teacher(data, "lenient", config, 1, root / "teacher", device="cpu", progress=False)
    return root, data, root / "teacher"


def _field(driver, label: str):
    """The body (inputs) of the form field whose label reads ``label``."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.XPATH, f"//span[@class='schema-form-property__label' and normalize-space()='{label}']"
                                         "/ancestor::div[contains(concat(' ', @class, ' '), ' p-label ')][1]/div[@class='p-label__body']")


def _type(driver, label: str, text: str, kind: str | None = None) -> None:
    """Type into a field; ``kind``: the type button to pick first for an optional (anyOf) field."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    if kind is not None:
        _field(driver, label).find_element(By.XPATH, f".//button[normalize-space()='{kind}']").click()
    control = _wait(lambda: next(iter(e for e in _field(driver, label).find_elements(By.CSS_SELECTOR, "textarea, input")
                                      if e.is_displayed() and e.is_enabled()), None), f"an input for {label}")
    control.send_keys(Keys.CONTROL, "a")
    control.send_keys(Keys.DELETE)
    control.send_keys(text)


def _wait(condition, what: str, timeout_s: float = 120):
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except WebDriverException:  # the page is still rendering
            value = None
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"the UI did not show {what} within {timeout_s} s")


async def _loss_curve_artifact(flow_run_id):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return next(a for a in artifacts if a.key and a.key.endswith("loss-curve"))


def test_distill_student_from_the_run_form_to_the_rendered_loss_curve(browser, server, teacher_and_data, tmp_path_factory):
    from selenium.webdriver.common.by import By

    root, data, teacher = teacher_and_data
    shots = tmp_path_factory.mktemp("shots")
    ui = server.removesuffix("/api")
    deployment_id = deploy("flows/training_flows.py:distill_student_flow", "distill-student", POOL)

    browser.get(f"{ui}/deployments/deployment/{deployment_id}/run")
    _wait(lambda: _field(browser, "data_dir"), "the run form")
    out = root / "student"
    _type(browser, "data_dir", str(data))
    _type(browser, "teacher", str(teacher))
    _type(browser, "out_dir", str(out))
    _type(browser, "steps", "1")
    _type(browser, "overrides (Optional)", json.dumps(SETTINGS), kind="dict")
    _type(browser, "device (Optional)", "cpu", kind="str")
    browser.save_screenshot(str(shots / "1-run-form.png"))
    browser.find_element(By.XPATH, "//button[normalize-space()='Submit']").click()

    # After Submit the UI shows the deployment's runs; the new run is the only one: open it as a user would.
    link = _wait(lambda: next(iter(browser.find_elements(By.CSS_SELECTOR, "a[href*='/runs/flow-run/']")), None),
                 "a link to the new flow run")
    flow_run_id = link.get_attribute("href").rstrip("/").rsplit("/", 1)[-1].split("?")[0]
    browser.get(f"{ui}/runs/flow-run/{flow_run_id}")
    run = asyncio.run(wait_for_run(flow_run_id, timeout_s=600))
    assert run.state.is_completed(), run.state
    assert run.parameters["steps"] == 1 and run.parameters["device"] == "cpu" and run.parameters["overrides"] == SETTINGS
    meta = json.loads((out / "final" / "fada.json").read_text())
    assert meta["kind"] == "student" and meta["step"] == 1 and meta["view"] == "lenient"

    browser.refresh()
    _wait(lambda: browser.find_elements(By.XPATH, "//*[contains(@class, 'state-badge') and normalize-space()='Completed']"),
          "the Completed state")
    browser.save_screenshot(str(shots / "2-flow-run-completed.png"))

    artifact = asyncio.run(_loss_curve_artifact(flow_run_id))
    browser.get(f"{ui}/artifacts/artifact/{artifact.id}")
    image = _wait(lambda: next(iter(i for i in browser.find_elements(By.CSS_SELECTOR, "img[src^='data:image/png']")
                                    if browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)), None),
                  "the loss-curve image")
    assert image.size["width"] > 100 and image.size["height"] > 50  # decoded and laid out, not a broken icon
    browser.save_screenshot(str(shots / "3-loss-curve-artifact.png"))
    print(f"screenshots: {shots}")
