# SAM 3 as three ONNX graphs (vision tower, text tower, prompt decoder); see docs/deployment.md.
# Follows mmdeploy's config layout (onnx_config / codebase_config / backend_config). The image
# size is static (input_shape, [width, height] as in mmdeploy); prompts (N) and exemplar boxes
# (K) are dynamic axes of the text and decoder graphs.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    # >= 17 keeps LayerNormalization one node (mmsam3.deploy.onnx_rewriters).
    opset_version=17,
    save_file='end2end.onnx',
    input_names=['image'],
    output_names=['feat_s4', 'feat_s8', 'feat_s16'],
    input_shape=None,
    optimize=False)
codebase_config = dict(
    type='mmdet',
    task='InstanceSegmentation',
    # mmdeploy imports these modules: they register SAM 3's rewriters.
    module=['mmsam3.deploy'],
    # SAM 3 specifics (mmdeploy ignores them): the text context, the most prompts one text /
    # decoder call takes (more are run in chunks of this size), the most exemplar boxes of one
    # prompt, and the size (MiB) above which a graph's weights go to an external-data file.
    sam3=dict(context_length=32, max_prompts=16, max_boxes=8, external_data_mib=512))
backend_config = dict(type='onnxruntime')
