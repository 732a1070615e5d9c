# SAM 3 as three ONNX graphs (vision tower, text tower, prompt decoder); see docs/deployment.md.
# mmdeploy's layout (onnx_config / codebase_config / backend_config); run it with mmdeploy's
# tools/deploy.py, tools/test.py and tools/profiler.py. The image size is static (input_shape,
# [width, height] as in mmdeploy); prompts (N) and exemplar boxes (K) are dynamic axes of the
# text and decoder graphs.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    # >= 17 keeps LayerNormalization one node (mmsam3.deploy.onnx_rewriters).
    opset_version=17,
    # The export writes vision_tower.onnx, text_tower.onnx, prompt_decoder.onnx and this
    # manifest, the file mmdeploy passes on as the model (mmsam3.deploy.graph_exporter).
    save_file='sam3_graphs.json',
    # The input mmdeploy's create_input makes; each graph's names are its own
    # (mmsam3.deploy.export_graphs).
    input_names=['image'],
    output_names=['logits', 'pred_boxes', 'presence', 'pred_masks', 'semantic_seg'],
    input_shape=None,
    optimize=False)
codebase_config = dict(
    # SAM 3 is its own mmdeploy codebase: mmdeploy adds 'mmsam3' to its Codebase enum and
    # imports `module`, which registers the codebase, its task processor, the rewriters and the
    # TensorRT 10 backend. mmdeploy's Task enum is fixed: SAM 3 reuses InstanceSegmentation,
    # whose output it has (pred_instances with boxes, masks, scores, labels).
    type='mmsam3',
    task='InstanceSegmentation',
    module=['mmsam3.deploy'],
    # SAM 3 specifics: the text context, the most prompts one text / decoder call takes (more
    # are run in chunks of this size), the most exemplar boxes of one prompt, the size (MiB)
    # above which a graph's weights go to an external-data file, and the phrases the deploy
    # tool runs on its image (its create_input; the dataset gives its own in tools/test.py).
    sam3=dict(context_length=32, max_prompts=16, max_boxes=8, external_data_mib=512,
              phrases=['object']))
# mmdeploy runs to_backend (TensorRT) in a spawned process that imports nothing of ours:
# loading the config imports mmsam3.deploy in the parent, which hooks that process
# (mmsam3.deploy.mmdeploy_tensorrt10).
custom_imports = dict(imports=['mmsam3.deploy'], allow_failed_imports=False)
backend_config = dict(type='onnxruntime')
