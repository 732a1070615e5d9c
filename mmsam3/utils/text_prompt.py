"""Text prompts as users write them: ``'fish . shark'`` or a list of phrases."""
import re
import warnings
from typing import List, Sequence, Union

import numpy as np

__all__ = ['parse_text_prompt']

# A period ends a phrase when white space or the end of the string follows it, so
# 'fish . shark', 'fish. shark' and 'fish .' split, while '3.5 inch floppy' stays whole.
_PHRASE_END = re.compile(r'\.(?=\s|$)')


def parse_text_prompt(text: Union[str, Sequence[str]]) -> List[str]:
    """Phrases of a text prompt: a string is split at periods that end a phrase, a list is kept.

    A string that holds no phrase (``'.'``, ``'   '``) gives ``[]`` with a warning naming it: the
    image then gets no prediction. Phrases inside a list are not split here (an empty phrase in a
    list is an error the model raises), but each must be a string.

    Raises:
        TypeError: ``text`` is neither a string nor a sequence of strings (``5``, ``None`` inside
            a list): nothing is run with ``'5'`` or ``'None'`` as a phrase.
    """
    if not isinstance(text, str):
        if not isinstance(text, (list, tuple, np.ndarray)):
            raise TypeError(f'a text prompt is a string ("fish . shark") or a list of strings '
                            f'(["fish", "shark"]), not {type(text).__name__} {text!r}')
        text = list(text)
        wrong = [(i, t) for i, t in enumerate(text) if not isinstance(t, str)]
        if wrong:
            i, t = wrong[0]
            raise TypeError(f'text prompt item {i} is {type(t).__name__} {t!r}: every phrase '
                            f'must be a string')
        return text
    phrases = [p.strip() for p in _PHRASE_END.split(text)]
    phrases = [p for p in phrases if p]
    if not phrases:
        warnings.warn(f'text prompt {text!r} holds no phrase (phrases are separated by " . "); '
                      'the image gets no prediction')
    return phrases
