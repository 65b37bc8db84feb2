"""The Prometheus remote-write 1.0 messages, built at import time from a descriptor.

Only the part of ``prometheus/prompb`` (``types.proto``, ``remote.proto``) a receiver of
remote-write 1.0 needs is declared, with the upstream field numbers, so the standard
``protobuf`` runtime decodes the wire format. Exemplars and native histograms are declared
as opaque ``bytes`` (the same wire type as their messages), only to be counted as skipped;
other fields (metadata) are kept as unknown fields and ignored::

    message WriteRequest { repeated TimeSeries timeseries = 1; }
    message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2;
                           repeated bytes exemplars = 3; repeated bytes histograms = 4; }
    message Label        { string name = 1; string value = 2; }
    message Sample       { double value = 1; int64 timestamp = 2; }   // timestamp: unix ms

No generated ``_pb2`` module is checked in: building the classes from a
``FileDescriptorProto`` works with every protobuf runtime (>= 4.21) without a ``protoc``
version to match.
"""

from __future__ import annotations

import math
import struct

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

#: Bit pattern Prometheus writes as the value of a staleness marker (a signalling NaN).
STALE_NAN_BITS = 0x7FF0000000000002

_F = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(
        name="tidewise/prometheus_remote.proto", package="prometheus", syntax="proto3"
    )

    def message(name: str, *fields: tuple[str, int, int, int, str | None]) -> None:
        msg = fd.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            field = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name

    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    message(
        "Label", ("name", 1, _F.TYPE_STRING, opt, None), ("value", 2, _F.TYPE_STRING, opt, None)
    )
    message(
        "Sample",
        ("value", 1, _F.TYPE_DOUBLE, opt, None),
        ("timestamp", 2, _F.TYPE_INT64, opt, None),
    )
    message(
        "TimeSeries",
        ("labels", 1, _F.TYPE_MESSAGE, rep, ".prometheus.Label"),
        ("samples", 2, _F.TYPE_MESSAGE, rep, ".prometheus.Sample"),
        ("exemplars", 3, _F.TYPE_BYTES, rep, None),
        ("histograms", 4, _F.TYPE_BYTES, rep, None),
    )
    message("WriteRequest", ("timeseries", 1, _F.TYPE_MESSAGE, rep, ".prometheus.TimeSeries"))
    return fd


# A private pool: another library registering the upstream prompb file in the default pool
# (same package and message names) must not clash with ours.
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
WriteRequest = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("prometheus.WriteRequest")
)
TimeSeries = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("prometheus.TimeSeries"))
Label = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("prometheus.Label"))
Sample = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("prometheus.Sample"))


def is_stale_marker(value: float) -> bool:
    """Whether ``value`` is Prometheus' staleness marker (not just any NaN)."""
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN_BITS


def stale_nan() -> float:
    """Return the staleness marker as a Python float (for tests and senders)."""
    return struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
