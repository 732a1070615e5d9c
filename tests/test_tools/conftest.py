import pytest

from tests.utils import make_shapes


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """A small shapes data root (8 training, 4 validation images at 168 px) per module."""
    return make_shapes(str(tmp_path_factory.mktemp('shapes')))
