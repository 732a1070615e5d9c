"""Browser demo of SAM 3: upload an image, type phrases, see masks, boxes and scores; or click
on one object and refine its mask click by click.

    python tools/gradio_demo.py configs/sam3/sam3_vit-l_zeroshot_coco.py \
        --weights checkpoints/sam3_vit-l_mmsam3.pth [--port 7860] [--dtype bf16]

Then open http://127.0.0.1:7860. The server listens on 127.0.0.1 only (use an SSH tunnel to
reach it from elsewhere). An uploaded image goes through the image tower once
(:meth:`SAM3Predictor.set_image`); every "Segment" after that runs only the prompt stages, and
phrases seen before reuse their text features. Exemplar boxes are typed as text, one box per
``;``: ``x1 y1 x2 y2`` in image pixels, prefixed ``-`` for a negative exemplar
(``10 20 80 90; -200 40 260 120``); with no phrase they prompt on their own.

Click mode (a config with the interactive head, e.g. ``configs/_base_/models/
sam3_vit-l_interactive.py``): a click on the picture on the right adds a positive or a negative
point (the radio button chooses) and shows that object's mask; each further click refines it
(the previous round's low-resolution logits are the mask prompt, as in SAM's predictor).
"Undo click" returns to the mask before the last click, "Reset clicks" starts again. Clicks reuse
the image encoding of the upload, like phrases.
"""
import argparse
import hashlib
import threading
from typing import List, Optional, Tuple

import cv2
import numpy as np

TABLE_HEADERS = ['#', 'phrase', 'score', 'x1', 'y1', 'x2', 'y2']


def parse_boxes(text: str) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``'x1 y1 x2 y2; -x1 y1 x2 y2'`` -> ``(K, 4)`` boxes and ``(K,)`` labels (1 / 0).

    Raises:
        ValueError: a box that is not four numbers (the message shows the expected form).
    """
    boxes, labels = [], []
    for part in (text or '').replace('\n', ';').split(';'):
        part = part.strip()
        if not part:
            continue
        label = 1
        if part[0] in '+-':
            label = 0 if part[0] == '-' else 1
            part = part[1:]
        try:
            values = [float(v) for v in part.replace(',', ' ').split()]
        except ValueError:
            values = []
        if len(values) != 4:
            raise ValueError(f'exemplar box {part!r}: write four numbers "x1 y1 x2 y2" (prefix '
                             '"-" for a negative box), boxes separated by ";"')
        boxes.append(values)
        labels.append(label)
    if not boxes:
        return None, None
    return np.asarray(boxes, np.float32), np.asarray(labels, np.int64)


def _colour(i: int) -> Tuple[int, int, int]:
    hue = (i * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 200, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[2]), int(bgr[1]), int(bgr[0])  # RGB


def draw_result(image_rgb: np.ndarray, result: dict, score_thr: float,
                boxes: Optional[np.ndarray] = None) -> Tuple[np.ndarray, List[list]]:
    """The image with the kept masks, boxes and labels drawn, and the score table rows."""
    canvas = image_rgb.astype(np.float32).copy()
    keep = np.nonzero(result['scores'] >= score_thr)[0]
    rows = []
    masks = result.get('masks')
    for rank, i in enumerate(keep):
        colour = np.asarray(_colour(int(result['labels'][i]) * 7 + rank), np.float32)
        if masks is not None:
            m = masks[i]
            canvas[m] = 0.5 * canvas[m] + 0.5 * colour
        rows.append([rank + 1, result['label_names'][i], round(float(result['scores'][i]), 4)] +
                    [round(float(v), 1) for v in result['bboxes'][i]])
    out = np.clip(canvas, 0, 255).astype(np.uint8)
    for rank, i in enumerate(keep):
        colour = _colour(int(result['labels'][i]) * 7 + rank)
        x1, y1, x2, y2 = [int(round(float(v))) for v in result['bboxes'][i]]
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(out, f"{result['label_names'][i]} {result['scores'][i]:.2f}",
                    (x1 + 2, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1,
                    cv2.LINE_AA)
    for b in ([] if boxes is None else boxes):
        x1, y1, x2, y2 = [int(round(float(v))) for v in b]
        cv2.rectangle(out, (x1, y1), (x2, y2), (255, 255, 255), 1, cv2.LINE_4)
    return out, rows


POSITIVE, NEGATIVE = 'positive (object)', 'negative (background)'


def draw_clicks(image_rgb: np.ndarray, steps: List[dict]) -> np.ndarray:
    """The image with the mask of the last click round and every click so far (green
    positive, red negative)."""
    out = image_rgb.copy()
    if steps:
        m = steps[-1]['mask']
        out[m] = (0.45 * out[m] + 0.55 * np.array([30, 144, 255])).astype(np.uint8)
    radius = max(3, round(0.012 * max(out.shape[:2])))
    for s in steps:
        colour = (0, 220, 0) if s['label'] == 1 else (230, 0, 0)
        centre = (int(round(s['x'])), int(round(s['y'])))
        cv2.circle(out, centre, radius, colour, -1, cv2.LINE_AA)
        cv2.circle(out, centre, radius, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def mask_digest(mask: np.ndarray) -> str:
    """A short fingerprint of a mask, shown in the status so a change is visible (and testable)."""
    return hashlib.sha1(np.packbits(mask).tobytes() + str(mask.shape).encode()).hexdigest()[:8]


class DemoSession:
    """One predictor shared by the page; the image it holds is re-encoded only when a request
    comes with a different image (a new upload, or another browser tab's image)."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.lock = threading.Lock()
        self.image_key = None
        self.encodes = 0

    @staticmethod
    def key(image_rgb: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(image_rgb).tobytes() +
                            str(image_rgb.shape).encode()).hexdigest()

    def _ensure(self, image_rgb: np.ndarray) -> str:
        key = self.key(image_rgb)
        if key != self.image_key:
            self.predictor.set_image(np.ascontiguousarray(image_rgb[:, :, ::-1]))
            self.image_key = key
            self.encodes += 1
        return key

    def upload(self, image_rgb):
        """Encode a new upload; returns the status, the picture to click on and no clicks."""
        if image_rgb is None:
            return 'no image', None, []
        with self.lock:
            self._ensure(image_rgb)
            h, w = image_rgb.shape[:2]
        return (f'image encoded ({w}x{h}); type phrases and press Segment, or click on an '
                'object', image_rgb, [])

    def _click_status(self, steps: List[dict]) -> str:
        if not steps:
            return f'0 clicks (image encodings so far: {self.encodes})'
        last = steps[-1]
        return (f'{len(steps)} click(s): mask {mask_digest(last["mask"])}, '
                f'{int(last["mask"].sum())} px, predicted IoU {last["score"]:.3f} '
                f'(image encodings so far: {self.encodes})')

    def click(self, image_rgb, steps: List[dict], polarity: str, x: float, y: float):
        """Add a click at pixel ``(x, y)`` and run one refinement round.

        Returns the drawn picture, the new click history and the status. ``steps`` is this
        browser tab's history: per click its point, label, mask and low-resolution logits.
        """
        import gradio as gr

        if image_rgb is None:
            raise gr.Error('upload an image first')
        steps = list(steps or [])
        label = 0 if polarity == NEGATIVE else 1
        points = [[s['x'], s['y']] for s in steps] + [[float(x), float(y)]]
        labels = [s['label'] for s in steps] + [label]
        with self.lock:
            self._ensure(image_rgb)
            try:
                # The first click asks for three candidates (one click is ambiguous); later
                # rounds refine the best one with its logits as the mask prompt.
                out = self.predictor.predict(
                    points=points, point_labels=labels,
                    mask_input=steps[-1]['logits'] if steps else None,
                    multimask_output=not steps)
            except (ValueError, RuntimeError) as exc:
                raise gr.Error(str(exc))
        best = int(np.argmax(out['scores']))
        steps.append(dict(x=float(x), y=float(y), label=label, mask=out['masks'][best],
                          logits=out['low_res_logits'][best:best + 1],
                          score=float(out['scores'][best])))
        return draw_clicks(image_rgb, steps), steps, self._click_status(steps)

    def undo(self, image_rgb, steps: List[dict]):
        """Drop the last click: the picture and mask return to the round before it."""
        steps = list(steps or [])[:-1]
        drawn = None if image_rgb is None else draw_clicks(image_rgb, steps)
        return drawn, steps, self._click_status(steps)

    def reset(self, image_rgb):
        """Forget every click on this image."""
        return self.undo(image_rgb, [])

    def segment(self, image_rgb, phrases: str, boxes_text: str, score_thr: float):
        import gradio as gr

        if image_rgb is None:
            raise gr.Error('upload an image first')
        try:
            boxes, labels = parse_boxes(boxes_text)
        except ValueError as exc:
            raise gr.Error(str(exc))
        if not (phrases or '').strip() and boxes is None:
            raise gr.Error('type at least one phrase (phrases separated by " . ") or a box')
        with self.lock:
            self._ensure(image_rgb)
            try:
                result = self.predictor.predict(texts=phrases or None, boxes=boxes,
                                                box_labels=labels)
            except ValueError as exc:
                raise gr.Error(str(exc))
        drawn, rows = draw_result(image_rgb, result, float(score_thr), boxes)
        status = (f'{len(rows)} instance(s) with score >= {score_thr:g} '
                  f'(image encodings so far: {self.encodes})')
        return drawn, rows, status


def build_demo(predictor, score_thr: float = 0.5):
    """The Gradio ``Blocks`` page around ``predictor`` (a :class:`SAM3Predictor`)."""
    import gradio as gr

    session = DemoSession(predictor)
    with gr.Blocks(title='SAM 3 (mmsam3)') as demo:
        gr.Markdown('## SAM 3: segment every instance of a phrase, or click on one object\n'
                    'Upload an image (encoded once). Type noun phrases separated by " . " and '
                    'press **Segment**, or click on the picture on the right: each click adds a '
                    'positive or negative point and refines that object\'s mask.')
        clicks = gr.State([])
        with gr.Row():
            with gr.Column():
                image = gr.Image(type='numpy', label='image', sources=['upload'],
                                 image_mode='RGB', elem_id='input-image')
                phrases = gr.Textbox(label='phrases', placeholder='red apple . dog',
                                     elem_id='phrases')
                boxes = gr.Textbox(label='exemplar boxes (optional)',
                                   placeholder='x1 y1 x2 y2; -x1 y1 x2 y2 (negative)',
                                   elem_id='boxes')
                thr = gr.Slider(0.0, 1.0, value=score_thr, step=0.01, label='score threshold',
                                elem_id='score-thr')
                run = gr.Button('Segment', variant='primary', elem_id='run')
                status = gr.Markdown(elem_id='status')
            with gr.Column():
                result = gr.Image(type='numpy', label='result (click here to segment one '
                                  'object)', interactive=False, elem_id='result-image')
                with gr.Row():
                    polarity = gr.Radio([POSITIVE, NEGATIVE], value=POSITIVE,
                                        label='next click', elem_id='click-label')
                    undo = gr.Button('Undo click', elem_id='undo')
                    reset = gr.Button('Reset clicks', elem_id='reset')
                table = gr.Dataframe(headers=TABLE_HEADERS, label='scores', interactive=False,
                                     elem_id='scores')
        image.upload(session.upload, inputs=image, outputs=[status, result, clicks])
        inputs = [image, phrases, boxes, thr]
        run.click(session.segment, inputs=inputs, outputs=[result, table, status])
        phrases.submit(session.segment, inputs=inputs, outputs=[result, table, status])

        def on_select(image_rgb, steps, label, evt: gr.SelectData):
            x, y = evt.index[:2]
            return session.click(image_rgb, steps, label, x, y)

        result.select(on_select, inputs=[image, clicks, polarity],
                      outputs=[result, clicks, status])
        undo.click(session.undo, inputs=[image, clicks], outputs=[result, clicks, status])
        reset.click(session.reset, inputs=image, outputs=[result, clicks, status])
    demo.session = session
    return demo


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='model config')
    parser.add_argument('--weights', help="checkpoint (default: the config's load_from)")
    parser.add_argument('--port', type=int, default=7860)
    parser.add_argument('--device', default=None, help='default: cuda:0 when available')
    parser.add_argument('--dtype', default=None,
                        help="float32 / bfloat16 / float16; default the config's choice")
    parser.add_argument('--score-thr', type=float, default=0.5,
                        help='initial score threshold of the page')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import mmsam3  # noqa: F401  (registers the modules)
    from mmsam3.apis import SAM3Predictor

    predictor = SAM3Predictor(args.config, weights=args.weights, device=args.device,
                              dtype=args.dtype)
    demo = build_demo(predictor, score_thr=args.score_thr)
    print(f'SAM 3 demo on http://127.0.0.1:{args.port}', flush=True)
    demo.queue(default_concurrency_limit=1).launch(server_name='127.0.0.1',
                                                  server_port=args.port, share=False,
                                                  show_error=True)


if __name__ == '__main__':
    main()
