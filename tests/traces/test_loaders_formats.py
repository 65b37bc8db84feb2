"""Each loader on tiny hand-written files, with values pinned by hand."""

from __future__ import annotations

import calendar
import io
import tarfile

import numpy as np
import pytest

import traces
from traces.loaders.fisher import load_wide
from traces.loaders.long import save


def series(frame, entity, metric):
    part = frame[(frame.entity == entity) & (frame.metric == metric)]
    return part.ts.tolist(), part.value.tolist()


def assert_canonical(frame):
    assert list(frame.columns) == ["entity", "metric", "ts", "value"]
    assert frame.ts.dtype == np.float64 and frame.value.dtype == np.float64
    assert np.isfinite(frame.value).all()
    key = frame[["entity", "metric", "ts"]]
    assert key.equals(key.sort_values(["entity", "metric", "ts"], kind="stable"))
    for attr in ("source", "format", "step", "kind", "units", "relative_time", "static"):
        assert attr in frame.attrs


# --------------------------------------------------------------------------- Azure LLM 2023
LLM = (
    "TIMESTAMP,ContextTokens,GeneratedTokens\n"
    "2023-11-16 18:17:00.2000000,100,5\n"
    "2023-11-16 18:17:00.7000000,300,7\n"
    "2023-11-16 18:17:02.5000000,50,1\n"
    "2023-11-16 18:17:02.9000000,10,2\n"
)
T0 = float(calendar.timegm((2023, 11, 16, 18, 17, 0)))


def test_llm_per_request_rows(write):
    f = traces.load(write("AzureLLMInferenceTrace_code.csv", LLM))
    assert_canonical(f)
    assert f.attrs["format"] == "azure-llm-2023" and f.attrs["step"] is None
    assert set(f.entity) == {"azure-llm-code"}
    ts, v = series(f, "azure-llm-code", "requests")
    assert v == [1.0, 1.0, 1.0, 1.0]
    assert ts == pytest.approx([T0 + 0.2, T0 + 0.7, T0 + 2.5, T0 + 2.9], abs=1e-6)
    assert series(f, "azure-llm-code", "tokens_in")[1] == [100, 300, 50, 10]
    assert series(f, "azure-llm-code", "tokens_out")[1] == [5, 7, 1, 2]


def test_llm_binned_per_second_includes_empty_bins(write):
    f = traces.load(write("AzureLLMInferenceTrace_code.csv.gz", LLM), step=1)
    assert f.attrs["step"] == 1.0
    ts, req = series(f, "azure-llm-code", "requests")
    assert ts == [T0, T0 + 1, T0 + 2]
    assert req == [2.0, 0.0, 2.0]
    assert series(f, "azure-llm-code", "tokens_in")[1] == [400.0, 0.0, 60.0]
    assert series(f, "azure-llm-code", "tokens_out")[1] == [12.0, 0.0, 3.0]


# --------------------------------------------------------------------- Azure Functions 2019
INV = (
    "HashFunction,HashOwner,HashApp,1_minute,2_minute,3_minute,4_minute\n"
    "fb,ob,ab,0,0,5,1\n"
    "fa,oa,aa,2,0,0,3\n"
)
RUN = (
    "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,"
    "percentile_Average_50,percentile_Average_100\n"
    "oa,aa,fa,120,5,100.0,200.0,100,110,200\n"
    "ob,ab,fb,3000,6,2000.0,4000.0,2000,3000,4000\n"
)
MEM = (
    "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,"
    "AverageAllocatedMb_pct100\n"
    "oa,aa,10,128,100,150\n"
    "ob,ab,20,256,200,300\n"
)


@pytest.mark.parametrize("gz", ["", ".gz"])
def test_functions_triple(write, gz):
    inv = write(f"day/x_inv.csv{gz}", INV)
    write(f"day/x_run.csv{gz}", RUN)
    write(f"day/x_mem.csv{gz}", MEM)
    for path in (inv, inv.parent):
        f = traces.load(path)
        assert_canonical(f)
        assert f.attrs["format"] == "azure-functions-2019"
        assert f.attrs["step"] == 60.0 and f.attrs["relative_time"] is True
        assert f.attrs["kind"] == "function"
        # every minute, zeros included; minute 1 starts the day (ts 0)
        assert series(f, "fa", "invocations") == ([0.0, 60.0, 120.0, 180.0], [2, 0, 0, 3])
        assert series(f, "fb", "invocations") == ([0.0, 60.0, 120.0, 180.0], [0, 0, 5, 1])
        st = f.attrs["static"]
        assert st["fa"]["duration_ms"] == 120.0 and st["fb"]["duration_ms"] == 3000.0
        assert st["fa"]["duration_p50_ms"] == 110.0 and st["fb"]["duration_max_ms"] == 4000.0
        # 1340-style memory is keyed by app: each function gets its app's value
        assert st["fa"]["memory_mb"] == 128.0 and st["fb"]["memory_mb"] == 256.0
        assert st["fb"]["memory_p100_mb"] == 300.0 and st["fa"]["app"] == "aa"


def test_functions_resample_sums_counts(write):
    inv = write("x_inv.csv", INV)
    f = traces.load(inv, step=120)
    assert series(f, "fa", "invocations") == ([0.0, 120.0], [2.0, 3.0])
    assert series(f, "fb", "invocations") == ([0.0, 120.0], [0.0, 6.0])
    assert f.attrs["static"]["fa"] == {"app": "aa", "owner": "oa"}  # no run/mem beside it


def test_functions_500_layout_minute_offset(write):
    inv = write("l500/invocations.csv",
          "HashOwner,HashApp,HashFunction,Trigger,480,481,482\n"
          "o1,a1,f1,http,1,2,3\n"
          "o2,a2,f2,timer,0,4,0\n")
    write("l500/durations.csv", RUN.replace("fa", "f1").replace("fb", "f2"))
    write("l500/memory.csv",
          "HashFunction,HashOwner,HashApp,SampleCount,AverageAllocatedMb\n"
          "f1,o1,a1,3,64.5\nf2,o2,a2,4,32.0\n")
    assert traces.detect_format(inv.parent) == "azure-functions-2019"
    f = traces.load(inv.parent)
    # column 480 is minute-of-day 480 = 08:00 → 28,800 s
    assert series(f, "f1", "invocations") == ([28800.0, 28860.0, 28920.0], [1, 2, 3])
    assert series(f, "f2", "invocations")[1] == [0, 4, 0]
    st = f.attrs["static"]
    assert st["f1"]["trigger"] == "http" and st["f2"]["trigger"] == "timer"
    assert st["f1"]["memory_mb"] == 64.5 and st["f2"]["memory_mb"] == 32.0
    assert st["f1"]["duration_ms"] == 120.0


# -------------------------------------------------------------------- Azure Functions 2021
def test_functions_2021_start_times_and_durations(write):
    path = write("Azure2021_x.csv",
                 "app,func,end_timestamp,duration\n"
                 "a1,f1,10.0,9.0\n"
                 "a1,f2,5.5,0.5\n"
                 "a1,f1,70.0,2.0\n")
    f = traces.load(path)
    assert f.attrs["format"] == "azure-functions-2021"
    assert series(f, "f1", "invocations") == ([1.0, 68.0], [1.0, 1.0])
    assert series(f, "f1", "duration_ms") == ([1.0, 68.0], [9000.0, 2000.0])
    assert series(f, "f2", "invocations") == ([5.0], [1.0])
    assert f.attrs["static"]["f1"] == {"app": "a1", "duration_ms": 5500.0, "invocations": 2.0}
    g = traces.load(path, step=60)
    assert series(g, "f1", "invocations") == ([0.0, 60.0], [1.0, 1.0])


# ------------------------------------------------------------------------- Alibaba 2018
MACHINE_USAGE = (
    "m_1,0,10,50,,,1.0,2.0,5\n"
    "m_1,10,20,52,0.5,1,1.0,2.0,-1\n"
    "m_1,40,30,54,,,1.0,2.0,7\n"
    "m_2,20,5,60,,,3.0,4.0,101\n"
)


def test_alibaba2018_documented_gaps_and_abnormal_disk(write):
    f = traces.load(write("machine_usage.csv", MACHINE_USAGE))
    assert_canonical(f)
    assert f.attrs["format"] == "alibaba-2018" and f.attrs["step"] is None
    assert series(f, "m_1", "cpu_util") == ([0.0, 10.0, 40.0], [10, 20, 30])
    # -1 and 101 are the schema's abnormal markers: dropped
    assert series(f, "m_1", "disk_io") == ([0.0, 40.0], [5, 7])
    assert series(f, "m_2", "disk_io") == ([], [])
    assert f.attrs["dropped"]["disk_io"] == 2
    # empty mem_gps / mkpi are absent samples
    assert series(f, "m_1", "mem_gps") == ([10.0], [0.5])
    g = traces.load(write("machine_usage.csv", MACHINE_USAGE), step=30)
    assert series(g, "m_1", "cpu_util") == ([0.0, 30.0], [15.0, 30.0])
    assert series(g, "m_1", "mem_util") == ([0.0, 30.0], [51.0, 54.0])


# ----------------------------------------------------------------------------- Bitbrains
BB_HEADER = ";\t".join([
    "Timestamp [ms]", "CPU cores", "CPU capacity provisioned [MHZ]", "CPU usage [MHZ]",
    "CPU usage [%]", "Memory capacity provisioned [KB]", "Memory usage [KB]",
    "Disk read throughput [KB/s]", "Disk write throughput [KB/s]",
    "Network received throughput [KB/s]", "Network transmitted throughput [KB/s]"])


def bb(*rows):
    return BB_HEADER + "\n" + "".join(";\t".join(map(str, r)) + "\n" for r in rows)


def test_bitbrains_semicolon_tab_and_derived_metrics(write):
    text = bb(
        (1372629600, 4, 10000.0, 5000.0, 50.0, 8192.0, 1024.0, 1.0, 3.0, 2.0, 0.5),
        (1372629900, 4, 10000.0, 2500.0, 25.0, 8192.0, 2048.0, 0.0, 0.0, 0.0, 0.0),
        (1372630200, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (1372630200, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    )
    write("vms/7.csv.gz", text)
    write("vms/12.csv", bb((1372629600, 2, 4000.0, 1000.0, 25.0, 1024.0, 512.0, 0, 0, 0, 0)))
    f = traces.load(write("vms/7.csv.gz", text).parent)
    assert_canonical(f)
    assert f.attrs["format"] == "bitbrains" and f.attrs["relative_time"] is False
    assert sorted(set(f.entity)) == ["12", "7"]
    # unix seconds despite "[ms]"; the repeated powered-off sample collapses to one
    ts, cores = series(f, "7", "cpu_cores")
    assert ts == [1372629600.0, 1372629900.0, 1372630200.0]
    assert cores == [2.0, 1.0, 0.0]  # 5000 MHz / (10000 MHz / 4 cores); 0 cores -> 0
    assert series(f, "12", "cpu_cores")[1] == [0.5]
    assert series(f, "7", "cpu_util")[1] == [50.0, 25.0, 0.0]
    assert series(f, "7", "mem_bytes")[1] == [1024.0 * 1024, 2048.0 * 1024, 0.0]
    assert series(f, "7", "disk_io")[1][0] == 4.0 * 1024
    assert series(f, "7", "net_in")[1][0] == 2.0 * 1024
    assert series(f, "7", "net_out")[1][0] == 0.5 * 1024
    assert f.attrs["static"]["12"] == {"cores": 2.0, "cpu_capacity_mhz": 4000.0,
                                       "mem_capacity_bytes": 1024.0 * 1024}


# ------------------------------------------------------------------------- Azure VM 2017
def test_azure_vm_avg_and_max_with_resampling(write):
    avg = write("vm/microsoft_avg_3.csv", "step,11,22\n1,10.0,1.0\n2,20.0,3.0\n3,30.0,5.0\n")
    write("vm/microsoft_max_3.csv.gz", "step,11,22\n1,15.0,2.0\n2,40.0,3.5\n3,35.0,9.0\n")
    folder = avg.parent
    assert traces.detect_format(folder) == "azure-vm-2017"
    f = traces.load(folder)
    assert f.attrs["step"] == 300.0 and f.attrs["relative_time"] is True
    assert series(f, "11", "cpu_util") == ([0.0, 300.0, 600.0], [10.0, 20.0, 30.0])
    assert series(f, "22", "cpu_util_max")[1] == [2.0, 3.5, 9.0]
    g = traces.load(folder, step=600)
    assert series(g, "11", "cpu_util") == ([0.0, 600.0], [15.0, 30.0])  # mean
    assert series(g, "11", "cpu_util_max") == ([0.0, 600.0], [40.0, 35.0])  # max


# -------------------------------------------------------------------------------- Fisher
FISHER_COLS = ("load,blkio.throttle.io_service_bytes_Async,blkio.throttle.io_service_bytes_Read,"
               "container_cpu_usage_seconds_total,container_memory_active_file,"
               "container_memory_hierarchical_memory_limit,container_memory_rss,"
               "container_network_tcp_TimeWait,cpu.busy,mem.memused,net.if.in.bytes")


def fisher_row(date, base):
    return date + "," + ",".join(str(base + i) for i in range(11)) + "\n"


def test_fisher_long_and_wide(write):
    text = ("date," + FISHER_COLS + "\n" + fisher_row("2018-07-24 00:00:00", 1)
            + fisher_row("2018-07-24 00:10:00", 100))
    path = write("fisher/container3.csv", text)
    f = traces.load(path.parent)
    assert f.attrs["format"] == "fisher" and f.attrs["step"] == 600.0
    t0 = float(calendar.timegm((2018, 7, 24, 0, 0, 0)))
    assert series(f, "container3", "load") == ([t0, t0 + 600], [1.0, 100.0])
    assert series(f, "container3", "net.if.in.bytes")[1] == [11.0, 110.0]
    assert len(set(f.metric)) == 11
    w = load_wide(path)
    assert list(w.columns) == FISHER_COLS.split(",")
    assert w.shape == (2, 11) and w.index.name == "date"
    assert str(w.index[1]) == "2018-07-24 00:10:00"
    assert w.loc[w.index[0], "cpu.busy"] == 9.0


# --------------------------------------------------------------------------- H100 power
def smi(n_instants, power=None):
    lines = ["timestamp, power.draw [W], utilization.gpu [%], memory.used [MiB]"]
    for k in range(n_instants):
        for g in range(8):
            p = power(k, g) if power else 100.0 + g
            lines.append(f"2025/07/26 23:32:{10 + k:02d}.{100 + g:03d}, {p:.2f} W, {10 * g} %,"
                         f" {g + 1} MiB")
    return "\n".join(lines) + "\n"


def test_h100_positional_gpus_and_unit_stripping(write):
    path = write("power-trace_x.csv.gz", smi(2, power=lambda k, g: 100.0 * (k + 1) + g))
    f = traces.load(path)
    assert f.attrs["format"] == "h100-power" and f.attrs["kind"] == "server"
    assert sorted(set(f.entity)) == [f"gpu{i}" for i in range(8)]
    t0 = float(calendar.timegm((2025, 7, 26, 23, 32, 10)))
    ts, p = series(f, "gpu3", "power_w")
    assert ts == pytest.approx([t0 + 0.103, t0 + 1.103], abs=1e-6)
    assert p == [103.0, 203.0]
    assert series(f, "gpu5", "gpu_util")[1] == [50.0, 50.0]
    assert series(f, "gpu2", "gpu_mem_bytes")[1] == [3 * 1048576.0] * 2
    g = traces.load(path, step=2)
    assert series(g, "gpu3", "power_w") == ([t0], [153.0])  # mean of the two instants


# ---------------------------------------------------------------------- Alibaba GenAI 2026
def tarball(path, member, text):
    data = text.encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_genai_tarballs_and_request_trace(tmp_path, write):
    folder = tmp_path / "genai"
    folder.mkdir()
    tarball(folder / "qps.tar.gz", "qps.csv",
            "timestamp_anon,value,container_ip,request_type\n"
            "1000.0,0.5,,API Requests\n"
            "1000.0,2.0,c1,Generative Requests\n"
            "1057.0,3.0,c1,Generative Requests\n")
    tarball(folder / "pod_gpu_duty_cycle_anon.tar.gz", "pod_gpu_duty_cycle_anon.csv",
            "value,timestamp_anon,container_ip\n40,1000.0,c1\n60,1000.0,c1\n")
    tarball(folder / "lora_update_latency_anon.tar.gz", "lora_update_latency_anon.csv",
            "timestamp_anon,value,container_ip\n1000.0,250,None\n")
    assert traces.detect_format(folder) == "alibaba-genai-2026"
    f = traces.load(folder)
    assert series(f, "c1", "qps") == ([1000.0, 1057.0], [2.0, 3.0])
    assert series(f, "gateway", "qps_api") == ([1000.0], [0.5])
    assert series(f, "c1", "gpu_util") == ([1000.0], [50.0])  # same-time samples averaged
    assert series(f, "unknown-container", "lora_update_latency_ms") == ([1000.0], [250.0])
    req = write("lora_request_trace.csv",
                "gmt_create,predict_type,predict_status,exec_time_seconds,groupId\n"
                "2024-11-15 16:57:50,TXT_2_IMG,SUCCEED,32.0,G0\n"
                "2024-11-15 16:57:59,TXT_2_IMG,SUCCEED,40.0,G1\n"
                "2024-11-15 16:58:30,IMG_2_IMG,FAILED,1.0,G2\n")
    g = traces.load(req, step=60)
    t0 = float(calendar.timegm((2024, 11, 15, 16, 57, 0)))
    assert series(g, "alibaba-genai-lora", "requests") == ([t0, t0 + 60], [2.0, 1.0])
    assert series(g, "alibaba-genai-lora", "exec_time_s") == ([t0, t0 + 60], [36.0, 1.0])


# ---------------------------------------------------------------- datacenter aggregates
def test_datacenter_implicit_clock(write):
    path = write("machine_usage_day_2_grouped_10_seconds.csv",
                 "cpu_util_percent,mem_util_percent,net_in,net_out,disk_io_percent\n"
                 "10,80,30,20,4\n20,82,31,21,5\n")
    f = traces.load(path)
    assert f.attrs["format"] == "datacenter-aggregates" and f.attrs["step"] == 10.0
    assert series(f, "alibaba-2018-datacenter", "cpu_util") == ([86400.0, 86410.0], [10, 20])
    assert series(f, "alibaba-2018-datacenter", "disk_io")[1] == [4.0, 5.0]
    az = write("vm_cpu_readings_month_aggregated_cpu_mem.csv",
               "timestamp,cpu_usage,assigned_mem\n0,5.0,1.0\n300,7.0,2.0\n")
    g = traces.load(az)
    assert series(g, "azure-2019-vms", "cpu_usage") == ([0.0, 300.0], [5.0, 7.0])


# --------------------------------------------------------------------------- long format
def test_long_roundtrip_and_iso_time(tmp_path, write):
    f = traces.load(write("x_inv.csv", INV))
    out = save(f, tmp_path / "export.csv.gz")
    g = traces.load(out)
    assert g.attrs["format"] == "long" and g.attrs["kind"] == "function"
    assert g.attrs["step"] == 60.0 and g.attrs["relative_time"] is True
    assert g[["entity", "metric", "ts", "value"]].equals(f[["entity", "metric", "ts", "value"]])
    iso = write("iso.csv", "entity,metric,ts,value\n"
                "vm1,cpu_util,2024-01-01T00:00:10Z,2.5\n"
                "vm1,cpu_util,2024-01-01T00:00:00Z,1.5\n")
    h = traces.load(iso)
    t0 = float(calendar.timegm((2024, 1, 1, 0, 0, 0)))
    assert series(h, "vm1", "cpu_util") == ([t0, t0 + 10], [1.5, 2.5])  # sorted
    assert h.attrs["relative_time"] is False and h.attrs["step"] == 10.0


def test_functions_original_azure_day_columns_count_from_one(write):
    header = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(map(str, range(1, 1441)))
    counts = ["0"] * 1440
    counts[0], counts[1439] = "7", "9"
    path = write("invocations_per_function_md.anon.d01.csv",
                 header + "\no,a,f,http," + ",".join(counts) + "\n")
    f = traces.load(path)
    ts, v = series(f, "f", "invocations")
    assert ts[0] == 0.0 and ts[-1] == 1439 * 60.0 and len(ts) == 1440
    assert v[0] == 7 and v[-1] == 9 and sum(v) == 16


def test_long_mixed_kinds_roundtrip(tmp_path, write):
    path = write("mixed.csv", "entity,metric,ts,value,kind\n"
                 "vm1,cpu_util,0,1,vm\nfn1,invocations,0,3,function\n")
    f = traces.load(path)
    assert f.attrs["kind"] == "mixed"
    assert f.attrs["kinds"] == {"vm1": "vm", "fn1": "function"}
    g = traces.load(save(f, tmp_path / "again.csv"))
    assert g.attrs["kinds"] == {"vm1": "vm", "fn1": "function"}
