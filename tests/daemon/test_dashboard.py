"""The dashboard: its files and the replay-report endpoint in process, then the real page
in headless Chromium against ``tidewise serve`` (a subprocess) with fed data.

The browser test reads the DOM Chromium produced after running the page's JavaScript
(``--dump-dom``) and checks that values fetched from the JSON API were rendered; it also
saves a screenshot (``--screenshot``) and checks it is a 1280x900 PNG.
"""

from __future__ import annotations

import html.parser
import json
import os
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.deps import get_app_settings
from service.store.db import Store
from tests.daemon.conftest_io import need_binaries, tidewise_daemon, wait_for

READ = {"Authorization": "Bearer read-token-0123456789ab"}

#: A replay report in the format ``tidewise replay --out`` writes (traces/replay/core.py),
#: with totals chosen so the Pareto front is known: D(5, .5), A(10, .2), B(20, .1) are not
#: beaten on both figures; C(30, .15) is beaten by B; the oracle (0, 0), a lower bound,
#: is shown but neither ranked nor allowed to beat the others.
REPORT = {
    "scenario": "serverless",
    "trace": "/data/azure/1340/invocations.csv",
    "config": {"cost_figure": "wasted_memory_gb_s", "sla_figure": "cold_start_rate"},
    "policies": {
        "keepalive-10m": [
            {
                "params": {"keepalive_min": 10},
                "totals": {"wasted_memory_gb_s": 10.0, "cold_start_rate": 0.2},
            },
            {
                "params": {"keepalive_min": 30},
                "totals": {"wasted_memory_gb_s": 30.0, "cold_start_rate": 0.15},
            },
        ],
        "hybrid-histogram": [
            {"params": {}, "totals": {"wasted_memory_gb_s": 20.0, "cold_start_rate": 0.1}}
        ],
        "bayes": [{"params": {}, "totals": {"wasted_memory_gb_s": 5.0, "cold_start_rate": 0.5}}],
        "oracle": [{"params": {}, "totals": {"wasted_memory_gb_s": 0.0, "cold_start_rate": 0.0}}],
    },
}


def write_report(folder: Path, report: dict = REPORT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report))
    return folder / "report.json"


# --------------------------------------------------------------------------- in process


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store.settings, store)) as c:
        yield c


def _use_report(client: TestClient, path: Path | None) -> None:
    cfg = client.app.state.settings.model_copy(update={"replay_report": path})
    client.app.dependency_overrides[get_app_settings] = lambda: cfg


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_page_files_are_served_and_root_redirects(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/dashboard/"
    page = client.get("/dashboard/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="dashboard.js">' in page.text
    # nothing inline, nothing from another origin: stored label values stay data
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-content-type-options"] == "nosniff"
    js = client.get("/dashboard/dashboard.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert client.get("/dashboard/dashboard.css").headers["content-type"].startswith("text/css")
    assert client.get("/dashboard/../api.py").status_code == 404
    assert client.get("/dashboard/secrets.txt").status_code == 404


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_replay_report_endpoint(client: TestClient, tmp_path: Path) -> None:
    _use_report(client, None)
    r = client.get("/v1/replay/report", headers=READ)
    assert r.status_code == 404 and "TIDEWISE_REPLAY_REPORT" in r.json()["detail"]

    # a folder of --out folders: the newest report.json is served
    old = write_report(tmp_path / "runs" / "a", {**REPORT, "scenario": "vm"})
    new = write_report(tmp_path / "runs" / "b")
    os.utime(old, (time.time() - 100, time.time() - 100))
    _use_report(client, tmp_path / "runs")
    r = client.get("/v1/replay/report", headers=READ)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["path"] == str(new) and body["report"] == REPORT
    assert body["modified"] == int(new.stat().st_mtime)
    # the --out folder itself, and the file itself
    _use_report(client, tmp_path / "runs" / "a")
    assert client.get("/v1/replay/report", headers=READ).json()["report"]["scenario"] == "vm"
    _use_report(client, old)
    assert client.get("/v1/replay/report", headers=READ).json()["path"] == str(old)

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "report.json").write_text("{not json")
    _use_report(client, tmp_path / "bad")
    r = client.get("/v1/replay/report", headers=READ)
    assert r.status_code == 404 and "report.json: not a readable JSON report" in r.json()["detail"]
    (tmp_path / "bad" / "report.json").write_text('{"scenario": "vm"}')
    assert "no 'policies' object" in client.get("/v1/replay/report", headers=READ).text

    _use_report(client, tmp_path / "empty")
    r = client.get("/v1/replay/report", headers=READ)
    assert r.status_code == 404 and "no report.json there" in r.json()["detail"]
    assert client.get("/v1/replay/report").status_code == 401


# --------------------------------------------------------------------------- in Chromium


class _Node:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs, self.children, self.parts = tag, attrs, [], []

    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text() for p in self.parts)

    def iter(self) -> Iterator[_Node]:
        yield self
        for c in self.children:
            yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[_Node]:
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def find(self, tag: str | None = None, **attrs: str) -> _Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}> in the page"
        return found[0]


class _DomParser(html.parser.HTMLParser):
    VOID = {"meta", "link", "input", "br", "img", "hr", "source", "col"}

    def __init__(self) -> None:
        super().__init__()
        self.root = _Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list) -> None:
        node = _Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        self.stack[-1].parts.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        node = _Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        self.stack[-1].parts.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse_dom(text: str) -> _Node:
    p = _DomParser()
    p.feed(text)
    return p.root


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--virtual-time-budget=5000",
]


def chromium(
    binary: str, tmp: Path, *args: str, profile: str = "profile"
) -> subprocess.CompletedProcess:
    # the page keeps its token in localStorage: a separate profile starts without one
    proc = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / ('chromium-' + profile)}", *args],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]!r}"
    return proc


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


TOKEN_READ = "dash-read-0123456789abcdef"
TOKEN_ALL = "dash-all-0123456789abcdef"


def test_dashboard_renders_api_data_in_headless_chromium(tmp_path: Path) -> None:
    bins = need_binaries("chromium")
    write_report(tmp_path / "replay")
    tokens = f"viewer:{TOKEN_READ}:read,ops:{TOKEN_ALL}:ingest+read+act"
    with tidewise_daemon(
        tmp_path,
        TIDEWISE_TOKENS=tokens,
        TIDEWISE_REPLAY_REPORT=str(tmp_path / "replay"),
        TIDEWISE_FORECAST_INTERVAL_S="1",
        TIDEWISE_FORECAST_STEP_S="10",
        TIDEWISE_FORECAST_HORIZON_STEPS="12",
        TIDEWISE_MODEL_DIR=str(tmp_path / "models"),
    ) as url:
        now = int(time.time())
        # 5 minutes of cpu_util ending in a value the page must show: 37.25 percent
        samples = [
            {
                "entity": "web-1",
                "kind": "vm",
                "metric": "cpu_util",
                "ts": now - 300 + i,
                "value": 30.0 + (i % 20),
            }
            for i in range(300)
        ]
        samples[-1]["value"] = 37.25
        # a counter: +5 per second, then a restart of the process (reset) and +3 per second
        samples += [
            {
                "entity": "web-1",
                "kind": "vm",
                "metric": "requests_total",
                "ts": now - 60 + i,
                "value": 5.0 * i if i < 30 else 3.0 * (i - 29),
                "unit": "count (counter)",
            }
            for i in range(60)
        ]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN_ALL}"}) as h:
            r = h.post("/v1/metrics", json={"samples": samples})
            assert r.status_code == 200, r.text
            target = {
                "name": "web",
                "kind": "scaling",
                "entity": "web-1",
                "metric": "cpu_util",
                "capacity": 25,
            }
            assert h.post("/v1/targets", json=target).status_code == 201
            # the forecast job (every 1 s) forecasts the series, then decides for the target
            wait_for(
                lambda: h.get("/v1/recommendations/web").json().get("ready"),
                30,
                what="a decision for target web",
            )
            before = h.get("/v1/recommendations/web").json()["desired"]["replicas"]

        page = f"{url}/dashboard/?refresh=0#token={TOKEN_READ}"
        out = chromium(bins["chromium"], tmp_path, "--dump-dom", page)
        dom = parse_dom(out.stdout.decode())
        assert dom.find("body").attrs.get("data-loaded") == "1", "the page script did not finish"
        assert dom.find(id="status").text().startswith("updated ")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN_ALL}"}) as h:
            after = h.get("/v1/recommendations/web").json()["desired"]["replicas"]
            first_action = h.get("/v1/actions", params={"target": "web"}).json()["actions"][0]

        # the target: its metric, the forecast fan (3 bands, 12 steps), decision and actions
        card = dom.find("div", data_target="web")
        assert card.find("div", **{"class": "meta"}).text() == (
            "scaling · policy bayes · web-1 / cpu_util"
        )
        fan = card.find("svg")
        bands = fan.find_all("polygon")
        assert sorted(b.attrs["data-level"] for b in bands) == ["50", "80", "90"]
        assert all(len(b.attrs["points"].split()) == 2 * 12 for b in bands)
        assert len(fan.find("polyline", **{"class": "mean"}).attrs["points"].split()) == 12
        assert len(fan.find("polyline", **{"class": "hist"}).attrs["points"].split()) == 300
        assert card.find("span", **{"class": "last"}).text().startswith("last 37.25 percent at ")
        assert (
            "forecast 12 steps, bands 50 % / 80 % / 90 %"
            in card.find("span", **{"class": "fc"}).text()
        )
        shown = card.find("span", **{"class": "action"}).text()
        assert shown in {f"replicas={before}", f"replicas={after}"}
        assert "replicas" in card.find("span", **{"class": "why"}).text()
        cells = [td.text() for td in card.find("table").find("tbody").find_all("td")]
        assert f"replicas={first_action['desired']['replicas']}" in cells
        assert card.find_all("div", **{"class": "chart small desired"})

        # the series browser: the fed series, its 300 raw points and last value
        options = [o.text() for o in dom.find("select", id="series-pick").find_all("option")]
        assert options == ["web-1 / cpu_util", "web-1 / requests_total"]
        note = dom.find(id="series-note").text()
        assert note == "web-1 / cpu_util: 300 points (raw, 1 s), last 37.25 percent"
        svg = dom.find(id="series-chart").find("svg")
        hist = svg.find("polyline", **{"class": "hist"})
        assert len(hist.attrs["points"].split()) == 300

        # the replay comparison: rows by cost, Pareto front starred, figures as in the file
        rows = dom.find(id="replay-table").find("tbody").find_all("tr")
        got = [
            (r.attrs["data-policy"], [c.text() for c in r.find_all("td")], r.attrs["class"])
            for r in rows
        ]
        assert got == [
            ("oracle", ["oracle", "", "0", "0"], ""),
            ("bayes", ["bayes", "", "5", "0.5"], "pareto"),
            ("keepalive-10m", ["keepalive-10m", "keepalive_min=10", "10", "0.2"], "pareto"),
            ("hybrid-histogram", ["hybrid-histogram", "", "20", "0.1"], "pareto"),
            ("keepalive-10m", ["keepalive-10m", "keepalive_min=30", "30", "0.15"], ""),
        ]
        dots = dom.find(id="replay-plot").find_all("circle")
        assert sorted(d.attrs["class"] for d in dots) == [
            "dot",
            "dot",
            "dot pareto",
            "dot pareto",
            "dot pareto",
        ]
        meta = dom.find(id="replay-meta").text()
        assert meta.startswith("scenario serverless · trace invocations.csv · written ")

        # a counter is drawn as its per-second rate, the reset counted from 0
        out = chromium(
            bins["chromium"],
            tmp_path,
            "--dump-dom",
            f"{url}/dashboard/?refresh=0&entity=web-1&metric=requests_total#token={TOKEN_READ}",
        )
        dom = parse_dom(out.stdout.decode())
        assert dom.find(id="series-note").text() == (
            "web-1 / requests_total: 60 points (raw, 1 s), per-second rate of the counter, "
            "last 3 count/s"
        )
        svg = dom.find(id="series-chart").find("svg")
        xy = [
            p.split(",") for p in svg.find("polyline", **{"class": "hist"}).attrs["points"].split()
        ]
        heights = [round(float(y), 6) for _, y in xy]
        # 59 rates: 29 of 5/s, then the reset (3/s) and 29 more of 3/s: two levels, 5 above 3
        assert len(heights) == 59 and len(set(heights[:29])) == 1 and len(set(heights[29:])) == 1
        assert heights[0] < heights[29]  # SVG y grows downwards

        # without a token the page says what is missing instead of showing data
        bare = chromium(
            bins["chromium"],
            tmp_path,
            "--dump-dom",
            f"{url}/dashboard/?refresh=0",
            profile="no-token",
        )
        status = parse_dom(bare.stdout.decode()).find(id="status").text()
        assert status.startswith("401: ") and "enter a token with scope read" in status

        shot = tmp_path / "dashboard.png"
        chromium(bins["chromium"], tmp_path, f"--screenshot={shot}", "--window-size=1280,900", page)
        assert png_size(shot) == (1280, 900)
