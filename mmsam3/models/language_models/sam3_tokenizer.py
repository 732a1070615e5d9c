"""Byte-level BPE tokenizer of CLIP, as used by SAM 3's text encoder.

Pipeline per prompt:

1. clean: ``ftfy.fix_text``, HTML-unescape twice, collapse whitespace runs to one space, strip,
   lower-case;
2. split into pre-tokens with CLIP's regex (contractions, letter runs, single digits, runs of
   other non-space symbols);
3. map every UTF-8 byte of a pre-token to a printable character, mark the last one with
   ``</w>`` and apply the BPE merges by rank;
4. ids = ``[<start_of_text>] + bpe ids + [<end_of_text>]``, zero-padded to ``context_length``.
   Longer sequences are cut to ``context_length`` and their last id is replaced by
   ``<end_of_text>`` (a warning is emitted the first time this happens for a tokenizer).

Vocabulary (49408 ids): 256 byte symbols, the same 256 with ``</w>``, 48894 merges,
``<start_of_text>`` = 49406, ``<end_of_text>`` = 49407. The pad id is 0, which is also the id of
the ``!`` byte symbol when it is not word-final and not merged (rare: a lone ``!`` is
``!</w>`` = 256); downstream pad masks (``ids == 0``) inherit that quirk from the official model.
"""
import gzip
import html
import warnings
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple, Union

import ftfy
import regex
import torch
from mmdet.registry import MODELS

__all__ = ['SAM3Tokenizer']

# Number of merge lines used from the vocabulary file (CLIP: 49152 - 256 byte symbols - 2 specials).
_NUM_MERGES = 49152 - 256 - 2
_SOT = '<start_of_text>'
_EOT = '<end_of_text>'
_PRETOKEN = regex.compile(
    r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)
_WHITESPACE = regex.compile(r'\s+')


@lru_cache()
def _byte_symbols() -> Dict[int, str]:
    """Reversible map byte -> printable unicode character (GPT-2/CLIP convention).

    Printable Latin-1 bytes map to themselves; the remaining 68 bytes (controls, space, ...) map to
    ``chr(256 + n)`` in byte order.
    """
    printable = [
        *range(ord('!'),
               ord('~') + 1), *range(ord('¡'),
                                     ord('¬') + 1), *range(ord('®'),
                                                           ord('ÿ') + 1)
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    # Order matters for the vocabulary: printable bytes first, then the remapped ones.
    return {b: table[b] for b in printable + [b for b in range(256) if b not in printable]}


def _clean(text: str) -> str:
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(' ', text).strip().lower()


@MODELS.register_module()
class SAM3Tokenizer:
    """CLIP BPE tokenizer producing SAM 3's ``(N, context_length)`` token-id tensor.

    Args:
        bpe_path (str): Path of ``bpe_simple_vocab_16e6.txt.gz`` (gzip text, one merge per line
            after a header line).
        context_length (int): Output length (SOT and EOT included). Default: 32.

    Call:
        texts (list[str] | str): prompts (a single ``str`` is treated as a one-element list).

        Returns ``LongTensor (N, context_length)``.

    Raises:
        ValueError: for an empty list, or for a prompt that yields no token after cleaning
            (``''``, whitespace only, ...). An empty prompt would otherwise silently become the
            sequence ``[SOT, EOT]``.
        TypeError: for a prompt that is not a ``str``.
    """

    def __init__(self, bpe_path: str, context_length: int = 32):
        if context_length < 2:
            raise ValueError(f'context_length must be >= 2 (SOT + EOT), got {context_length}')
        self.context_length = int(context_length)
        with gzip.open(bpe_path, 'rt', encoding='utf-8') as f:
            lines = f.read().split('\n')
        merges = [tuple(line.split()) for line in lines[1:_NUM_MERGES + 1]]

        symbols = list(_byte_symbols().values())
        vocab = symbols + [s + '</w>' for s in symbols] + [''.join(m) for m in merges]
        vocab += [_SOT, _EOT]
        self.encoder: Dict[str, int] = {tok: i for i, tok in enumerate(vocab)}
        self.decoder: Dict[int, str] = {i: tok for tok, i in self.encoder.items()}
        self.merge_ranks: Dict[Tuple[str, str], int] = {m: i for i, m in enumerate(merges)}
        self.byte_to_symbol = _byte_symbols()
        self.symbol_to_byte = {s: b for b, s in self.byte_to_symbol.items()}
        self.sot_token_id = self.encoder[_SOT]
        self.eot_token_id = self.encoder[_EOT]
        self.pad_token_id = 0
        self.vocab_size = len(self.encoder)
        self._bpe_cache: Dict[str, List[str]] = {_SOT: [_SOT], _EOT: [_EOT]}
        self._warned_truncation = False

    # ------------------------------------------------------------------ BPE
    def _bpe(self, pretoken: str) -> List[str]:
        """Split one byte-mapped pre-token into vocabulary symbols by greedy lowest-rank merges."""
        cached = self._bpe_cache.get(pretoken)
        if cached is not None:
            return cached
        parts = list(pretoken[:-1]) + [pretoken[-1] + '</w>']
        inf = float('inf')
        while len(parts) > 1:
            # The best-ranked adjacent pair is merged everywhere it occurs (left to right).
            ranks = [self.merge_ranks.get(pair, inf) for pair in zip(parts, parts[1:])]
            best = min(ranks)
            if best == inf:
                break
            first, second = parts[ranks.index(best)], parts[ranks.index(best) + 1]
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._bpe_cache[pretoken] = parts
        return parts

    def encode(self, text: str) -> List[int]:
        """Token ids of one prompt, without SOT/EOT and without truncation."""
        ids = []
        for piece in _PRETOKEN.findall(_clean(text)):
            mapped = ''.join(self.byte_to_symbol[b] for b in piece.encode('utf-8'))
            ids.extend(self.encoder[s] for s in self._bpe(mapped))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Best-effort inverse of :meth:`encode` (cleaning is not undone); ignores pad ids."""
        text = ''.join(self.decoder[int(i)] for i in ids if int(i) != self.pad_token_id)
        text = text.replace(_SOT, '').replace(_EOT, '')
        # '</w>' is made of printable symbols, so it survives the byte mapping unchanged.
        data = bytearray(self.symbol_to_byte[c] for c in text)
        return data.decode('utf-8', errors='replace').replace('</w>', ' ').strip()

    # ------------------------------------------------------------------ batch API
    def __call__(self,
                 texts: Union[str, Sequence[str]],
                 context_length: Optional[int] = None) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError('SAM3Tokenizer got an empty list of prompts')
        length = self.context_length if context_length is None else int(context_length)
        out = torch.full((len(texts), length), self.pad_token_id, dtype=torch.long)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f'prompt {row} is a {type(text).__name__}, expected str')
            body = self.encode(text)
            if not body:
                raise ValueError(f'prompt {row} ({text!r}) is empty after cleaning; SAM 3 needs '
                                 'a non-empty noun phrase')
            ids = [self.sot_token_id] + body + [self.eot_token_id]
            if len(ids) > length:
                if not self._warned_truncation:
                    warnings.warn(
                        f'prompt {text[:60]!r}... has {len(ids)} tokens with SOT/EOT, more than '
                        f'the context length {length}; it is truncated (further truncations '
                        'are not reported)', UserWarning)
                    self._warned_truncation = True
                ids = ids[:length - 1] + [self.eot_token_id]
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(vocab_size={self.vocab_size}, '
                f'context_length={self.context_length})')
