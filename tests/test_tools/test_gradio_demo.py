"""tools/gradio_demo.py: the page in a real headless Chromium (selenium), on the tiny model."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from tests.test_apis.conftest import draw_image, tiny_ckpt, write_tiny_infer_config  # noqa: F401
from tests.utils import free_port

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools'))
import gradio_demo  # noqa: E402

# Where the screenshot of the last browser run is kept (git-ignored work_dirs).
SCREENSHOT = osp.join(REPO, 'work_dirs', 'gradio_demo_test.png')


def test_parse_boxes():
    boxes, labels = gradio_demo.parse_boxes('10 20 80 90; -5,6,30,40\n+1 2 3 4')
    np.testing.assert_array_equal(boxes, [[10, 20, 80, 90], [5, 6, 30, 40], [1, 2, 3, 4]])
    np.testing.assert_array_equal(labels, [1, 0, 1])
    assert gradio_demo.parse_boxes('  ') == (None, None)
    with pytest.raises(ValueError, match='four numbers'):
        gradio_demo.parse_boxes('1 2 3')


def test_draw_result_keeps_scores_above_threshold():
    img = np.zeros((40, 60, 3), np.uint8)
    masks = np.zeros((2, 40, 60), bool)
    masks[0, 5:20, 5:30] = True
    result = dict(scores=np.array([0.9, 0.2], np.float32),
                  bboxes=np.array([[5, 5, 30, 20], [0, 0, 10, 10]], np.float32),
                  labels=np.array([0, 1]), label_names=['cat', 'dog'], masks=masks)
    drawn, rows = gradio_demo.draw_result(img, result, score_thr=0.5)
    assert drawn.shape == img.shape and drawn[10, 10].any() and not drawn[35, 55].any()
    assert rows == [[1, 'cat', 0.9, 5.0, 5.0, 30.0, 20.0]]


def _browser():
    """Paths of chromium and chromedriver, or a reason why they are missing."""
    binary = next((shutil.which(b) for b in ('chromium', 'chromium-browser', 'google-chrome')
                   if shutil.which(b)), None)
    driver = shutil.which('chromedriver')
    if binary is None or driver is None:
        return None, None, ('headless Chromium / chromedriver not installed (tools/setup_env.sh '
                            'installs them with apt as root: apt-get install chromium '
                            'chromium-driver)')
    return binary, driver, ''


def _wait_http(url, proc, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(1)
    return False


def test_demo_page_in_headless_chromium(tiny_ckpt, bpe_path, tmp_path):
    pytest.importorskip('gradio', reason='gradio missing: bash tools/setup_env.sh installs it')
    selenium = pytest.importorskip('selenium', reason='selenium missing: run tools/setup_env.sh')
    binary, driver_path, reason = _browser()
    if binary is None:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    cfg = write_tiny_infer_config(tmp_path / 'tiny.py', bpe_path)
    image = draw_image(tmp_path / 'upload.png', size=(120, 180))
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED='False', OMP_NUM_THREADS='1',
               PYTHONUNBUFFERED='1', NO_PROXY='127.0.0.1,localhost')
    log_path = tmp_path / 'server.log'
    with open(log_path, 'w') as log:
        server = subprocess.Popen(
            [sys.executable, osp.join(REPO, 'tools', 'gradio_demo.py'), cfg, '--weights',
             tiny_ckpt, '--port', str(port), '--device', 'cpu', '--score-thr', '0'],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path))
    driver = None
    try:
        url = f'http://127.0.0.1:{port}/'
        assert _wait_http(url, server, timeout=180), log_path.read_text()[-3000:]
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for arg in ('--headless=new', '--no-sandbox', '--disable-gpu',
                    '--disable-dev-shm-usage', '--window-size=1400,1100'):
            options.add_argument(arg)
        try:
            driver = webdriver.Chrome(service=Service(driver_path), options=options)
        except selenium.common.exceptions.WebDriverException as exc:
            pytest.skip(f'chromium is installed but does not start here: {exc.msg}')
        driver.set_page_load_timeout(60)
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        upload = wait.until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, '#input-image input[type=file]')))
        upload.send_keys(image)
        wait.until(ec.text_to_be_present_in_element((By.ID, 'status'), 'image encoded'))
        box = driver.find_element(By.CSS_SELECTOR, '#phrases textarea, #phrases input')
        box.send_keys('red box . green circle')
        driver.find_element(By.ID, 'run').click()
        wait.until(ec.text_to_be_present_in_element((By.ID, 'status'), 'instance(s)'))
        status = driver.find_element(By.ID, 'status').text
        assert 'image encodings so far: 1' in status, status
        result = wait.until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, '#result-image img')))
        assert result.get_attribute('src')
        wait.until(ec.text_to_be_present_in_element((By.ID, 'scores'), 'green circle'))
        table = driver.find_element(By.ID, 'scores').text
        assert 'red box' in table and 'score' in table
        # a second phrase on the same upload: no new image encoding
        box.clear()
        box.send_keys('blue sky')
        driver.find_element(By.ID, 'run').click()
        wait.until(ec.text_to_be_present_in_element((By.ID, 'scores'), 'blue sky'))
        status = driver.find_element(By.ID, 'status').text
        assert 'image encodings so far: 1' in status, status
        os.makedirs(osp.dirname(SCREENSHOT), exist_ok=True)
        assert driver.save_screenshot(str(tmp_path / 'demo.png'))
        shutil.copy(tmp_path / 'demo.png', SCREENSHOT)
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
