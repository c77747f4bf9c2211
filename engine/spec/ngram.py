"""Prompt lookup (n-gram) proposals: the context's own continuation of its last words.

When the output repeats the input (edit this code, quote this text, summarise with the
source's words), the tokens after an earlier occurrence of the context's last n tokens are
a good guess for what comes next. The longest suffix (prompt_lookup_max down to _min)
with an earlier occurrence wins, and its most recent occurrence is used: the most recent
copy is the one an edit is walking through.
"""

from __future__ import annotations


def propose_ngram(tokens: list[int], k: int, lookup_min: int, lookup_max: int) -> list[int]:
    """Up to k tokens that followed the latest earlier occurrence of the context's
    longest matching suffix; [] when no suffix of lookup_min..lookup_max tokens recurs."""
    n_tokens = len(tokens)
    if k < 1 or n_tokens < lookup_min + 1:
        return []
    last = tokens[-1]
    for n in range(min(lookup_max, n_tokens - 1), lookup_min - 1, -1):
        suffix = tokens[n_tokens - n :]
        # Scan backwards for the suffix's last token (list.index has no reverse form; the
        # step is cheap next to a forward, and contexts here are thousands, not millions).
        end = n_tokens - 2  # index of an occurrence's last token, before the suffix itself
        while end >= n - 1:
            if tokens[end] == last and tokens[end - n + 1 : end + 1] == suffix:
                return tokens[end + 1 : end + 1 + k]
            end -= 1
    return []
