"""close_distributed: the tools end a distributed run by destroying the process group."""
import torch.distributed as dist

from mmsam3.utils import close_distributed
from tests.utils import free_port


def test_noop_when_not_distributed():
    assert not dist.is_initialized()
    close_distributed()
    assert not dist.is_initialized()


def test_destroys_the_default_group():
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0,
                            world_size=1)
    try:
        assert dist.is_initialized()
        close_distributed()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
