"""Bad traces raise TraceFormatError naming the file, the 1-based line and the column."""

from __future__ import annotations

import pytest

import traces
from common.errors import InputError, TraceFormatError

LLM_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def error_of(path, **kw) -> str:
    with pytest.raises(TraceFormatError) as info:
        traces.load(path, **kw)
    return str(info.value)


def test_unparsable_number_names_file_row_column(write):
    path = write("AzureLLMInferenceTrace_code.csv", LLM_HEADER
                 + "2023-11-16 18:17:00.2,100,5\n2023-11-16 18:17:00.7,12x,7\n")
    msg = error_of(path)
    assert str(path) in msg and "row 3" in msg and "'ContextTokens'" in msg
    assert "expected a number" in msg and "'12x'" in msg


def test_timestamps_going_backwards(write):
    path = write("AzureLLMInferenceTrace_code.csv", LLM_HEADER
                 + "2023-11-16 18:17:01.0,1,1\n2023-11-16 18:17:02.0,1,1\n"
                   "2023-11-16 18:17:01.5,1,1\n")
    msg = error_of(path)
    assert str(path) in msg and "row 4" in msg and "'TIMESTAMP'" in msg
    assert "'2023-11-16 18:17:01.5' follows '2023-11-16 18:17:02.0'" in msg


def test_unparsable_timestamp(write):
    path = write("AzureLLMInferenceTrace_code.csv", LLM_HEADER + "16/11/2023 18:17,1,1\n")
    msg = error_of(path)
    assert "row 2" in msg and "'TIMESTAMP'" in msg and "16/11/2023 18:17" in msg


def test_empty_count_cell_in_the_minute_matrix(write):
    path = write("d_inv.csv", "HashFunction,HashOwner,HashApp,1_minute,2_minute,3_minute\n"
                              "f1,o,a,1,2,3\n"
                              "f2,o,a,4,,6\n")
    msg = error_of(path)
    assert str(path) in msg and "row 3" in msg and "'2_minute'" in msg and "empty" in msg


def test_negative_count(write):
    msg = error_of(write("d_inv.csv", "HashFunction,HashOwner,HashApp,1_minute,2_minute\n"
                                      "f1,o,a,1,-2\n"))
    assert "row 2" in msg and "'2_minute'" in msg and ">= 0" in msg


def test_minute_columns_out_of_order(write):
    msg = error_of(write("d_inv.csv", "HashFunction,HashOwner,HashApp,1_minute,3_minute\n"
                                      "f1,o,a,1,2\n"))
    assert "row 1" in msg and "'3_minute'" in msg and "consecutive" in msg


def test_duplicate_function_row(write):
    msg = error_of(write("d_inv.csv", "HashFunction,HashOwner,HashApp,1_minute\n"
                                      "f1,o,a,1\nf1,o,a,2\n"))
    assert "row 3" in msg and "'HashFunction'" in msg and "twice" in msg


def test_missing_column_named(write):
    path = write("vm_cpu_readings_month_aggregated_cpu_mem.csv",
                 "timestamp,cpu_usage,assigned_mem\n0,1,1\n")
    msg = error_of(path, format="bitbrains")
    assert str(path) in msg and "missing column(s)" in msg and "'CPU usage [MHZ]'" in msg
    assert "the header has: timestamp,cpu_usage,assigned_mem" in msg


def test_wrong_format_named_explicitly(write):
    path = write("AzureLLMInferenceTrace_code.csv", LLM_HEADER + "2023-11-16 18:17:00.2,1,1\n")
    for fmt in traces.FORMATS:
        if fmt == "azure-llm-2023":
            continue
        with pytest.raises(TraceFormatError) as info:
            traces.load(path, format=fmt)
        assert str(path) in str(info.value), fmt


def test_ragged_row_reports_the_line(write):
    path = write("AzureLLMInferenceTrace_code.csv",
                 LLM_HEADER + "2023-11-16 18:17:00.2,1,1\n2023-11-16 18:17:00.3,1,1,9\n")
    msg = error_of(path)
    assert str(path) in msg and "row 3" in msg


def test_bitbrains_bad_value(write):
    header = ";\t".join([
        "Timestamp [ms]", "CPU cores", "CPU capacity provisioned [MHZ]", "CPU usage [MHZ]",
        "CPU usage [%]", "Memory capacity provisioned [KB]", "Memory usage [KB]",
        "Disk read throughput [KB/s]", "Disk write throughput [KB/s]",
        "Network received throughput [KB/s]", "Network transmitted throughput [KB/s]"])
    good = ";\t".join(["1372629600", "2", "100", "50", "50", "8", "4", "0", "0", "0", "0"])
    bad = good.replace(";\t50;\t50;", ";\t50;\tn/a;").replace("1372629600", "1372629900")
    msg = error_of(write("5.csv", header + "\n" + good + "\n" + bad + "\n"))
    assert "5.csv row 3" in msg and "'CPU usage [%]'" in msg and "'n/a'" in msg


def test_h100_wrong_unit_and_truncated_log(write):
    header = "timestamp, power.draw [W], utilization.gpu [%], memory.used [MiB]\n"
    rows = [f"2025/07/26 23:32:10.{100 + g:03d}, 70.0 W, 0 %, 17 MiB\n" for g in range(8)]
    rows[5] = "2025/07/26 23:32:10.105, 70.0 kW, 0 %, 17 MiB\n"
    msg = error_of(write("power-trace_a.csv", header + "".join(rows)), format="h100-power")
    assert "row 7" in msg and "'power.draw [W]'" in msg and "followed by 'W'" in msg
    msg = error_of(write("power-trace_b.csv", header + "".join(rows[:7])), format="h100-power")
    assert "multiple of 8" in msg


def test_alibaba_machine_going_back_in_time(write):
    msg = error_of(write("machine_usage.csv", "m_1,20,1,1,,,1,1,1\nm_1,10,1,1,,,1,1,1\n"))
    assert "row 2" in msg and "'time_stamp'" in msg and "m_1" in msg


def test_alibaba_undocumented_empty_cell(write):
    msg = error_of(write("machine_usage.csv", "m_1,20,1,,,,1,1,1\n"))
    assert "row 1" in msg and "'mem_util_percent'" in msg


def test_fisher_repeated_date(write):
    cols = ("load,blkio.throttle.io_service_bytes_Async,blkio.throttle.io_service_bytes_Read,"
            "container_cpu_usage_seconds_total,container_memory_active_file,"
            "container_memory_hierarchical_memory_limit,container_memory_rss,"
            "container_network_tcp_TimeWait,cpu.busy,mem.memused,net.if.in.bytes")
    row = ",1" * 11
    msg = error_of(write("container1.csv", "date," + cols + "\n2018-07-24 00:00:00" + row
                         + "\n2018-07-24 00:00:00" + row + "\n"))
    assert "row 3" in msg and "'date'" in msg


def test_long_nan_and_duplicates(write):
    msg = error_of(write("a.csv", "entity,metric,ts,value\nvm,cpu_util,0,1\nvm,cpu_util,10,\n"))
    assert "row 3" in msg and "'value'" in msg
    msg = error_of(write("b.csv", "entity,metric,ts,value\nvm,cpu_util,0,1\nvm,cpu_util,0,2\n"))
    assert "row 3" in msg and "twice" in msg
    msg = error_of(write("c.csv", "entity,metric,ts,value\nvm,cpu_util,yesterday,1\n"))
    assert "row 2" in msg and "'ts'" in msg


def test_detection_failure_lists_formats(write):
    msg = error_of(write("notes.txt", "hello\n"))
    assert "cannot tell the trace format" in msg
    for name in traces.FORMATS:
        assert name in msg


def test_corrupt_gzip_and_missing_file(write, tmp_path):
    msg = error_of(write("x.csv", "garbage").rename(tmp_path / "x.csv.gz"), format="long")
    assert "x.csv.gz" in msg
    assert "no such file" in error_of(tmp_path / "absent.csv")


def test_unknown_format_and_bad_step(write):
    path = write("AzureLLMInferenceTrace_code.csv", LLM_HEADER + "2023-11-16 18:17:00.2,1,1\n")
    with pytest.raises(InputError, match="unknown trace format 'nope'"):
        traces.load(path, format="nope")
    for step in (0, -5, float("nan"), "60"):
        with pytest.raises(InputError, match="step must be a positive number"):
            traces.load(path, step=step)
