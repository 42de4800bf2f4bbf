"""msame's TXT reader, the fast path (gan.txt.parse_g_values) against numpy's own parser: the same float32 values to
the bit wherever it answers, and None (numpy's parser then) wherever the text is outside its grammar."""

import io
import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gan.files import format_msame_txt, parse_txt
from gan.txt import parse_g_values

EXAMPLES = 300


def reference(data):
    """Every token through Python's float (strtod's correctly rounded double) to float32: np.loadtxt's numbers."""
    with np.errstate(over="ignore"):
        return np.array([float(t) for t in data.split()], dtype=np.float64).astype(np.float32)


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=300), st.sampled_from([1, 3, 28]))
def test_msame_text_reads_as_numpy_reads_it(values, row):
    array = np.array(values, np.float32)
    array = array[: len(array) // row * row].reshape(-1, row) if len(array) >= row else array
    data = format_msame_txt(array).encode()
    fast = parse_g_values(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        numpy_reads = np.loadtxt(io.BytesIO(data), dtype=np.float32, ndmin=1).ravel()
    # %g of a float32 can fall outside the fast grammar only by an exponent beyond 22 (then None, numpy reads it)
    assert fast is None or same_bits(fast, numpy_reads)
    assert same_bits(reference(data), numpy_reads)


TOKEN = st.one_of(
    st.from_regex(r"\A-?[0-9]{1,17}(\.[0-9]{0,8})?(e[-+]?[0-9]{1,4})?\Z", fullmatch=True),
    st.from_regex(r"\A-?\.[0-9]{1,8}(e-?[0-9]{1,2})?\Z", fullmatch=True),
    st.text(alphabet="0123456789.-+eE \n\tx", min_size=1, max_size=8),
)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(st.lists(TOKEN, max_size=40), st.sampled_from([" ", "\n", "  ", " \n"]))
def test_any_text_is_read_right_or_left_to_numpy(tokens, separator):
    data = separator.join(tokens).encode()
    fast = parse_g_values(data)
    if fast is None:
        return
    assert same_bits(fast, reference(data))  # whatever it answers is strtod's number


def test_the_grammar_and_what_falls_back():
    assert same_bits(parse_g_values(b"-0 1e-05 1.5e+10 .5 5. -1.e3 \n"), np.array([-0.0, 1e-5, 1.5e10, 0.5, 5.0, -1e3], np.float32))
    assert parse_g_values(b" \n").size == 0
    for outside in (
        b"nan",
        b"inf",
        b"+1",
        b"1-2",
        b"e5",
        b"1e",
        b"1e+",
        b"1.2.3",
        b"1e5e5",
        b"1e5.5",
        b"1\t2",
        b"1\r\n",
        b"1E5",
        b"1234567890123456",
        b"1e23",
        b"1e-23",
        b"0x10",
        b"--1",
    ):
        assert parse_g_values(outside) is None, outside


def test_parse_txt_takes_numpy_where_the_fast_path_cannot(tmp_path):
    path = tmp_path / "0_output_0.txt"
    path.write_bytes(b"1 2\r\n3 nan\r\n")  # CRLF and NaN: numpy's parser
    assert np.isnan(parse_txt(path)[3]) and parse_txt(path)[:3].tolist() == [1, 2, 3]
