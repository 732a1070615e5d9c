"""SAM3Tokenizer: ids identical to the official SimpleTokenizer, errors, truncation warning."""
import warnings

import pytest
import torch

from mmsam3.models.language_models import SAM3Tokenizer

TRICKY = [
    'a cat',
    'Red   CAR\t\n on the   road ',
    'person, dog & frisbee!!!',
    "the dog's bone isn't here, you're right, we'll see, I'd go, I'm, they've",
    'Tom &amp; Jerry &lt;3 &amp;amp; &quot;quoted&quot; &#39;x&#39;',
    'café naïve résumé Ærøskøbing straße',
    '東京タワー 和 北京 한국어 текст مرحبا',
    'emoji 🐶🐱 face 😀 flag 🇫🇷',
    'mojibake: cafÃ© and â€œquotesâ€\x9d',
    'numbers 1234567890 3.14 -5 1e10 #42 @home',
    'under_score hyphen-ated slash/path back\\slash (paren) [bracket] {brace}',
    '!? ?! ... --- *** ~~~ ^^^ `code` $$$ 100% <tag> |pipe|',
    'zero\u200bwidth non\u00a0breaking\u3000ideographic space',
    'ALL CAPS SHOUTING AND MiXeD cAsE',
    'a ' * 40,
    'supercalifragilisticexpialidocious antidisestablishmentarianism ' * 3,
    '<start_of_text> literal special <end_of_text>',
    'x',
    '!',
    'a!b',
]


@pytest.fixture(scope='module')
def tokenizers(bpe_path):
    from sam3.model.tokenizer_ve import SimpleTokenizer
    return SAM3Tokenizer(bpe_path), SimpleTokenizer(bpe_path=bpe_path)


@pytest.mark.requires_official
def test_ids_match_official(tokenizers):
    ours, ref = tokenizers
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        out = ours(TRICKY)
    expected = ref(TRICKY, context_length=32)
    assert out.dtype == torch.long and out.shape == (len(TRICKY), 32)
    for text, a, b in zip(TRICKY, out, expected):
        assert torch.equal(a, b), text
    for text in TRICKY:
        assert ours.encode(text) == ref.encode(text), text
    # Other context lengths too.
    assert torch.equal(ours(TRICKY[:5], context_length=77), ref(TRICKY[:5], context_length=77))


@pytest.mark.requires_official
def test_vocab_and_special_ids(tokenizers):
    ours, ref = tokenizers
    assert ours.vocab_size == 49408
    assert ours.sot_token_id == 49406 and ours.eot_token_id == 49407
    assert ours.encoder == ref.encoder
    ids = ours(['a cat'])
    assert ids[0, 0] == 49406 and ids[0, 3] == 49407 and ids[0, 4:].eq(0).all()
    assert ours.decode(ids[0].tolist()) == 'a cat'


def test_truncation_and_single_warning(bpe_path):
    tok = SAM3Tokenizer(bpe_path)
    long_text = ' '.join(['dog'] * 50)
    with pytest.warns(UserWarning, match='truncated'):
        ids = tok([long_text])
    assert ids.shape == (1, 32)
    assert ids[0, 0] == 49406 and ids[0, -1] == 49407 and ids[0, 1:-1].ne(0).all()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        tok([long_text, long_text])  # already reported: no second warning
    # Exactly 32 tokens (30 words + SOT/EOT) is not a truncation.
    fresh = SAM3Tokenizer(bpe_path)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        ids = fresh([' '.join(['dog'] * 30)])
    assert ids[0, -1] == 49407


def test_errors(bpe_path):
    tok = SAM3Tokenizer(bpe_path)
    with pytest.raises(ValueError, match='empty list'):
        tok([])
    with pytest.raises(ValueError, match='empty'):
        tok([''])
    with pytest.raises(ValueError, match='empty'):
        tok(['cat', '   \t '])
    with pytest.raises(TypeError):
        tok(['cat', 3])
    assert tok('cat').shape == (1, 32)


def test_registry_build(bpe_path):
    from mmdet.registry import MODELS
    tok = MODELS.build(dict(type='SAM3Tokenizer', bpe_path=bpe_path, context_length=16))
    assert tok(['a', 'b c']).shape == (2, 16)
