"""MarkUnlabeled + BuildPromptQueries + PackSAM3Inputs: every category prompted, flag packed."""
import numpy as np

from mmsam3.datasets.transforms import BuildPromptQueries, MarkUnlabeled, PackSAM3Inputs


def test_unlabeled_image_gets_all_categories_and_the_flag():
    results = dict(img=np.zeros((28, 28, 3), np.uint8), img_shape=(28, 28), ori_shape=(28, 28),
                   prompt_texts=('red circle', 'blue square'))
    results = MarkUnlabeled()(results)
    results = BuildPromptQueries(prompt_all_classes=True)(results)
    sample = PackSAM3Inputs()(results)['data_samples']
    assert sample.metainfo['unlabeled'] is True
    assert sample.metainfo['texts'] == ['red circle', 'blue square']
