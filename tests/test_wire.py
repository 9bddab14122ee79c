"""Wire format: round trips, zero copy, and validation errors that name the field."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from shared_protocol import PROTOCOL_VERSION
from shared_protocol.messages import validate
from shared_protocol.wire import ALLOWED_DTYPES, ZERO_COPY_THRESHOLD, Message, ProtocolError, decode, encode


def roundtrip(msg: Message) -> Message:
    frames = encode(msg)
    return decode([bytes(memoryview(f).cast("B")) if not isinstance(f, bytes) else f for f in frames])


@settings(max_examples=60, deadline=None)
@given(arr=hnp.arrays(dtype=st.sampled_from([np.dtype(d) for d in ALLOWED_DTYPES]),
                      shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)))
def test_arrays_roundtrip_bit_exact(arr):
    out = roundtrip(Message("result", {"state": "done"}, {"a": arr}, job_id="j1"))
    assert out.arrays["a"].dtype == arr.dtype and out.arrays["a"].shape == arr.shape
    assert out.arrays["a"].tobytes() == arr.tobytes()


def test_header_fields_roundtrip():
    msg = Message("submit", {"kind": "sleep", "params": {"seconds": 0.5, "nested": [1, "x", None]}}, job_id=None)
    out = roundtrip(msg)
    assert (out.type, out.content, out.msg_id, out.protocol) == ("submit", msg.content, msg.msg_id, PROTOCOL_VERSION)
    assert validate(out)["watch"] is True  # default filled in


def test_large_arrays_are_sent_and_received_without_copies():
    big = np.arange(ZERO_COPY_THRESHOLD, dtype=np.float32)  # 256 KiB
    small = np.arange(10, dtype=np.float32)
    frames = encode(Message("result", {}, {"big": big, "small": small}, job_id="j"))
    assert frames[1] is not None and np.shares_memory(frames[1], big)
    assert isinstance(frames[2], bytes)
    received = bytearray(big.tobytes())
    out = decode([frames[0], received, frames[2]])
    assert np.shares_memory(out.arrays["big"], np.frombuffer(received, np.uint8))


def test_non_contiguous_and_big_endian_arrays_are_normalised():
    a = np.arange(24, dtype=">f4").reshape(4, 6)[:, ::2]
    out = roundtrip(Message("result", {}, {"a": a}, job_id="j")).arrays["a"]
    np.testing.assert_array_equal(out, a)
    assert out.dtype == np.dtype("<f4")


@pytest.mark.parametrize("arr", [np.array([object()], dtype=object), np.array(["text"]), np.zeros(2, np.complex64)])
def test_unsafe_dtypes_are_refused_on_encode(arr):
    with pytest.raises(ProtocolError, match="dtype"):
        encode(Message("result", {}, {"a": arr}, job_id="j"))


def test_nan_in_content_is_refused():
    with pytest.raises(ProtocolError, match="content"):
        encode(Message("progress", {"fraction": float("nan")}, job_id="j"))


def header(**over):
    h = {"protocol": PROTOCOL_VERSION, "type": "ping", "msg_id": "abc", "job_id": None, "parent": None,
         "content": {}, "buffers": []}
    h.update(over)
    return json.dumps(h).encode()


@pytest.mark.parametrize("frames, field", [
    ([b"\xff\xfe"], "header"),
    ([b"[1, 2]"], "header"),
    ([b'{"protocol": "1.0", "type": "ping", "msg_id": "a", "content": {"x": NaN}}'], "header"),
    ([header(protocol=1)], "header.protocol"),
    ([header(type=5)], "header.type"),
    ([header(msg_id="has space")], "header.msg_id"),
    ([header(job_id=7)], "header.job_id"),
    ([header(content=[1])], "header.content"),
    ([header(buffers={})], "header.buffers"),
    ([header(buffers=[{"name": "a", "dtype": "<f4", "shape": [2]}])], "header.buffers"),
    ([header(buffers=[{"name": "a", "dtype": "|O", "shape": [1]}]), b"x" * 8], "header.buffers[0].dtype"),
    ([header(buffers=[{"name": "a", "dtype": "<f4", "shape": [-1]}]), b""], "header.buffers[0].shape"),
    ([header(buffers=[{"name": "a", "dtype": "<f4", "shape": [2, 2]}]), b"x" * 15], "header.buffers[0]"),
    ([header(buffers=[{"name": "a", "dtype": "<f8", "shape": [1 << 40, 1 << 40]}]), b"x" * 8], "header.buffers[0]"),
    ([header(buffers=[{"name": "a", "dtype": "<f4", "shape": [1]}] * 2), b"x" * 4, b"x" * 4], "header.buffers[1].name"),
])
def test_malformed_frames_name_the_field(frames, field):
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert info.value.field == field


def test_major_version_mismatch_is_refused_and_minor_is_tolerated():
    with pytest.raises(ProtocolError) as info:
        decode([header(protocol="2.0")])
    assert info.value.code == "version_mismatch" and "2.0" in str(info.value) and PROTOCOL_VERSION in str(info.value)
    msg = decode([header(protocol="1.7", content={"t": 1.0, "added_in_1_7": {"x": 1}})])
    assert validate(msg)["added_in_1_7"] == {"x": 1}


def test_oversize_message_is_refused_before_parsing():
    with pytest.raises(ProtocolError) as info:
        decode([header(), b"x" * 2000], max_bytes=1000)
    assert info.value.code == "too_large"


@pytest.mark.parametrize("mtype, content, field", [
    ("submit", {"params": {}}, "submit.content.kind"),
    ("submit", {"kind": "sleep", "params": []}, "submit.content.params"),
    ("submit", {"kind": "sleep", "params": {}, "watch": "yes"}, "submit.content.watch"),
    ("progress", {"fraction": 1.5}, "progress.content.fraction"),
    ("list_jobs", {"limit": 0}, "list_jobs.content.limit"),
    ("error", {"code": "x"}, "error.content.message"),
    ("cancel", {}, "header.job_id"),
    ("frobnicate", {}, "header.type"),
])
def test_content_validation_names_the_field(mtype, content, field):
    with pytest.raises(ProtocolError) as info:
        validate(Message(mtype, content, job_id="j" if mtype == "progress" else None))
    assert info.value.field == field
