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
import torch

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


def write_tiny_interactive_config(path, bpe_path):
    """The tiny inference config with the interactive head (tracker neck + SAM heads)."""
    cfg = write_tiny_infer_config(path, bpe_path)
    text = open(cfg).read().replace('sam3_tiny.py', 'sam3_tiny_interactive.py')
    assert 'sam3_tiny_interactive.py' in text
    with open(cfg, 'w') as f:
        f.write(text)
    return cfg


@pytest.fixture(scope='module')
def interactive_model(tmp_path_factory, bpe_path):
    """``(config, checkpoint)`` of the tiny interactive model, default initialisation after
    seed 0 (its masks follow the clicks; larger random weights saturate to the whole image)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    tmp = tmp_path_factory.mktemp('interactive')
    cfg = write_tiny_interactive_config(tmp / 'tiny_interactive.py', bpe_path)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(cfg).model)
    ckpt = str(tmp / 'tiny_interactive.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return cfg, ckpt


def test_click_session_refines_undoes_and_resets(interactive_model, tmp_path):
    """Clicks through the page's session object with the real predictor (no browser): each
    click changes the mask, undo returns the previous one, reset clears, one image encoding."""
    import cv2

    from mmsam3.apis import SAM3Predictor

    cfg, ckpt = interactive_model
    img = cv2.imread(draw_image(tmp_path / 'img.png', size=(120, 180)))[:, :, ::-1].copy()
    session = gradio_demo.DemoSession(SAM3Predictor(cfg, weights=ckpt, device='cpu'))
    status, shown, steps = session.upload(img)
    assert 'image encoded' in status and shown is img and steps == []
    drawn1, steps1, status1 = session.click(img, steps, gradio_demo.POSITIVE, 60, 40)
    assert len(steps1) == 1 and steps1[0]['label'] == 1 and status1.startswith('1 click(s)')
    assert drawn1.shape == img.shape and (drawn1 != img).any()
    drawn2, steps2, status2 = session.click(img, steps1, gradio_demo.NEGATIVE, 115, 70)
    assert [s['label'] for s in steps2] == [1, 0] and status2.startswith('2 click(s)')
    assert len(steps1) == 1  # the previous history is not changed in place
    assert gradio_demo.mask_digest(steps2[-1]['mask']) != gradio_demo.mask_digest(
        steps1[0]['mask'])  # the negative click changed the mask
    # the second round refines with the first round's logits: the same as calling the
    # predictor by hand with that mask prompt
    ref = session.predictor.predict(points=[[60, 40], [115, 70]], point_labels=[1, 0],
                                    mask_input=steps1[0]['logits'], multimask_output=False)
    np.testing.assert_array_equal(steps2[-1]['mask'], ref['masks'][0])
    drawn_u, steps_u, status_u = session.undo(img, steps2)
    assert len(steps_u) == 1 and status_u == status1
    np.testing.assert_array_equal(drawn_u, drawn1)
    drawn_r, steps_r, status_r = session.reset(img)
    assert steps_r == [] and status_r.startswith('0 clicks')
    np.testing.assert_array_equal(drawn_r, img)
    assert session.encodes == 1
    # a click outside the image is refused with the predictor's message; nothing changes
    gr = pytest.importorskip('gradio')
    with pytest.raises(gr.Error, match='outside'):
        session.click(img, steps1, gradio_demo.POSITIVE, 500, 40)
    assert len(steps1) == 1


def test_click_on_a_model_without_the_interactive_head(tiny_ckpt, bpe_path, tmp_path):
    gr = pytest.importorskip('gradio')
    from mmsam3.apis import SAM3Predictor

    cfg = write_tiny_infer_config(tmp_path / 'tiny.py', bpe_path)
    img = np.zeros((60, 80, 3), np.uint8)
    session = gradio_demo.DemoSession(SAM3Predictor(cfg, weights=tiny_ckpt, device='cpu'))
    with pytest.raises(gr.Error, match='no interactive head'):
        session.click(img, [], gradio_demo.POSITIVE, 10, 10)
    with pytest.raises(gr.Error, match='upload an image'):
        session.click(None, [], gradio_demo.POSITIVE, 10, 10)


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


def _start_demo(cfg, ckpt, tmp_path):
    """The demo server on a free port (``(process, url, log path)``)."""
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED='False', OMP_NUM_THREADS='1',
               PYTHONUNBUFFERED='1', NO_PROXY='127.0.0.1,localhost')
    log_path = tmp_path / 'server.log'
    with open(log_path, 'w') as log:
        server = subprocess.Popen(
            [sys.executable, osp.join(REPO, 'tools', 'gradio_demo.py'), cfg, '--weights', ckpt,
             '--port', str(port), '--device', 'cpu', '--score-thr', '0'],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path))
    return server, f'http://127.0.0.1:{port}/', log_path



def _start_chrome(binary, driver_path):
    """Headless Chromium through selenium (the test skips when it cannot start here)."""
    import selenium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                '--window-size=1400,1100'):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except selenium.common.exceptions.WebDriverException as exc:
        pytest.skip(f'chromium is installed but does not start here: {exc.msg}')
    driver.set_page_load_timeout(60)
    return driver


def _open_and_upload(driver, url, image):
    """Open the page and upload ``image``; returns the page's ``WebDriverWait``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 120)
    upload = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, '#input-image input[type=file]')))
    upload.send_keys(image)
    return wait


def test_demo_page_in_headless_chromium(tiny_ckpt, bpe_path, tmp_path):
    pytest.importorskip('gradio', reason='gradio missing: bash tools/setup_env.sh installs it')
    pytest.importorskip('selenium', reason='selenium missing: run tools/setup_env.sh')
    binary, driver_path, reason = _browser()
    if binary is None:
        pytest.skip(reason)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    cfg = write_tiny_infer_config(tmp_path / 'tiny.py', bpe_path)
    image = draw_image(tmp_path / 'upload.png', size=(120, 180))
    server, url, log_path = _start_demo(cfg, tiny_ckpt, tmp_path)
    driver = None
    try:
        assert _wait_http(url, server, timeout=180), log_path.read_text()[-3000:]
        driver = _start_chrome(binary, driver_path)
        wait = _open_and_upload(driver, url, image)
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


def test_click_mode_in_headless_chromium(interactive_model, tmp_path):
    """Clicks on the picture in a real browser: the mask follows positive / negative clicks,
    undo returns the previous mask, reset clears, and the image is encoded once."""
    pytest.importorskip('gradio', reason='gradio missing: bash tools/setup_env.sh installs it')
    pytest.importorskip('selenium', reason='selenium missing: run tools/setup_env.sh')
    binary, driver_path, reason = _browser()
    if binary is None:
        pytest.skip(reason)
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    cfg, ckpt = interactive_model
    image = draw_image(tmp_path / 'upload.png', size=(120, 180))
    server, url, log_path = _start_demo(cfg, ckpt, tmp_path)
    driver = None
    try:
        assert _wait_http(url, server, timeout=180), log_path.read_text()[-3000:]
        driver = _start_chrome(binary, driver_path)
        wait = _open_and_upload(driver, url, image)
        wait.until(ec.text_to_be_present_in_element((By.ID, 'status'), 'image encoded'))
        picture = wait.until(ec.visibility_of_element_located(
            (By.CSS_SELECTOR, '#result-image img')))

        def status():
            return driver.find_element(By.ID, 'status').text

        def click_at(x, y, expected):
            """Click image pixel (x, y) of the shown picture; wait for ``expected`` clicks."""
            img = driver.find_element(By.CSS_SELECTOR, '#result-image img')
            box = driver.execute_script(
                'const r = arguments[0].getBoundingClientRect();'
                'return [r.width, r.height, arguments[0].naturalWidth,'
                ' arguments[0].naturalHeight];', img)
            w, h, nat_w, nat_h = box
            scale = min(w / nat_w, h / nat_h)  # object-fit: contain
            dx, dy = (x + 0.5 - nat_w / 2) * scale, (y + 0.5 - nat_h / 2) * scale
            ActionChains(driver).move_to_element_with_offset(img, dx, dy).click().perform()
            wait.until(ec.text_to_be_present_in_element((By.ID, 'status'),
                                                        f'{expected} click(s)'))
            return status()

        assert picture.get_attribute('src')
        first = click_at(60, 40, 1)
        driver.find_element(By.XPATH, "//label[contains(., 'negative')]").click()
        second = click_at(115, 70, 2)
        mask1, mask2 = first.split('mask ')[1][:8], second.split('mask ')[1][:8]
        assert mask1 != mask2, (first, second)
        driver.find_element(By.ID, 'undo').click()
        wait.until(ec.text_to_be_present_in_element((By.ID, 'status'), '1 click(s)'))
        assert f'mask {mask1}' in status(), status()
        driver.find_element(By.ID, 'reset').click()
        wait.until(ec.text_to_be_present_in_element((By.ID, 'status'), '0 clicks'))
        assert 'image encodings so far: 1' in status(), status()
        assert driver.save_screenshot(str(tmp_path / 'clicks.png'))
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
