"""msame's TXT numbers, read without a per-value parser: the bytes of a whole file decoded by numpy at once.

msame and ais_bench write every value with C's %g ("-0.123457", "1.5e-05", 6 significant digits), separated by
spaces and newlines. A value of that grammar is M x 10^k with an integer mantissa M of at most 15 digits; where
|k| <= 22, both M and 10^|k| are exact in float64, so one IEEE multiplication or division gives the correctly
rounded float64, the one strtod gives, and its float32 is np.loadtxt's to the bit. A file outside that grammar
(inf, nan, tabs, CR, a plus first, a 16-digit mantissa, an exponent beyond 22, any other character) gets None,
and the caller reads it with numpy's own parser. Needs numpy only.
"""

import numpy as np

_SPACE, _NEWLINE, _DOT, _MINUS, _PLUS, _E, _ZERO = (ord(c) for c in " \n.-+e0")
MAX_DIGITS = 15  # below 2**53: every mantissa exact in float64
MAX_POWER = 22  # 10**22 is the largest power of ten exact in float64
MAX_WIDTH = 24  # the longest token read here; longer ones go to numpy's parser
_POWERS = 10.0 ** np.arange(MAX_POWER + 1)


def parse_g_values(data):
    """float32 values of a text of %g numbers (bytes), flat, or None where the text is outside the fast grammar.

    Token k is column k of a (width, tokens) character table; a state machine walks its rows, every token at
    once: mantissa digits by Horner's rule, at most one dot, an 'e' followed by an optional sign and 1-3
    digits, a minus only first."""
    chars = np.frombuffer(data, dtype=np.uint8)
    body = (chars != _SPACE) & (chars != _NEWLINE)
    edges = np.diff(np.concatenate(([0], body.view(np.int8), [0])))
    first, end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if first.size == 0:
        return np.empty(0, np.float32)
    length = end - first
    width = int(length.max())
    if width > MAX_WIDTH:
        return None
    padded = np.concatenate((chars, np.zeros(width, np.uint8)))
    count = first.size
    mantissa, exponent = np.zeros(count), np.zeros(count)
    digits, exponent_digits, fraction = (np.zeros(count, np.int64) for _ in range(3))
    after_dot, in_exponent, exponent_negative = (np.zeros(count, bool) for _ in range(3))
    previous_e = np.zeros(count, bool)
    ok = np.ones(count, bool)
    for j in range(width):  # row j: the j-th character of every token (0 beyond its end)
        c = np.where(length > j, padded[first + j], 0).astype(np.uint8)
        value = c - np.uint8(_ZERO)  # a digit's value; any other character wraps beyond 9
        digit = value <= 9
        dot, e, minus = c == _DOT, c == _E, c == _MINUS
        sign = minus | (c == _PLUS)
        ok &= digit | dot | e | sign | (c == 0)
        ok &= ~dot | ~(after_dot | in_exponent)
        ok &= ~e | ~in_exponent
        ok &= ~sign | previous_e | ((j == 0) & minus)
        in_mantissa = digit & ~in_exponent
        if in_mantissa.any():
            mantissa = np.where(in_mantissa, mantissa * 10 + value, mantissa)
            digits += in_mantissa
            fraction += in_mantissa & after_dot
        in_digits = digit & in_exponent
        if in_digits.any():
            exponent = np.where(in_digits, exponent * 10 + value, exponent)
            exponent_digits += in_digits
        exponent_negative |= minus & previous_e
        after_dot |= dot
        in_exponent |= e
        previous_e = e
    ok &= (digits > 0) & (digits <= MAX_DIGITS) & (~in_exponent | ((exponent_digits > 0) & (exponent_digits <= 3)))
    if not ok.all():
        return None
    power = np.where(exponent_negative, -exponent, exponent).astype(np.int64) - fraction
    if (np.abs(power) > MAX_POWER).any():
        return None
    # mantissa < 10**15 < 2**53 and 10**|power| <= 10**22 are exact: one rounding, strtod's
    magnitude = np.where(power >= 0, mantissa * _POWERS[np.clip(power, 0, None)], mantissa / _POWERS[np.clip(-power, 0, None)])
    with np.errstate(over="ignore"):  # a value beyond float32 becomes Inf, which the caller refuses by name
        return np.where(chars[first] == _MINUS, -magnitude, magnitude).astype(np.float32)
