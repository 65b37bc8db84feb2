"""The dashboard: its files, the replay-report endpoint and the forecast's input age in
process, then the real page in headless Chromium against ``tidewise serve`` (a subprocess).

The browser tests drive Chromium over the DevTools protocol (:mod:`tests.daemon.browser`):
they read the DOM the page's JavaScript produced, hover a replay point, and write one
screenshot per state of the page (fresh, stale input, fallback forecast) to
``docs/dashboard-*.png``, the pictures docs/dashboard.md shows.
"""

from __future__ import annotations

import html.parser
import json
import math
import os
import re
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service import forecasting
from service.api import create_app
from service.deps import get_app_settings
from service.store.db import Store
from tests.daemon.browser import Page, chromium
from tests.daemon.conftest import send
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



def test_forecast_answer_says_how_old_its_input_is(http: httpx.Client, store: Store) -> None:
    """GET /v1/forecasts carries the newest sample's time and age, and the stale flag the
    dashboard's banner shows (three forecast periods or buckets without a sample)."""
    now = int(time.time())
    send(http, "old-vm", "vm", "cpu_cores", [(now - 800 + i, 2.0) for i in range(600)])
    send(http, "new-vm", "vm", "cpu_cores", [(now - 600 + i, 2.0) for i in range(600)])
    forecasting.refresh(store, now)
    cfg = store.settings
    stale_after = 3 * max(cfg.forecast_interval_s, cfg.forecast_step_s)
    old = http.get("/v1/forecasts/old-vm", params={"metric": "cpu_cores"}).json()
    new = http.get("/v1/forecasts/new-vm", params={"metric": "cpu_cores"}).json()
    assert old["stale_after_s"] == new["stale_after_s"] == stale_after == 45
    assert old["input_last_ts"] == now - 201 and new["input_last_ts"] == now - 1
    # the age is counted when answered: at least what it was when the samples were sent
    assert old["input_age_s"] >= 201 and old["input_stale"] is True
    assert 1 <= new["input_age_s"] < old["input_age_s"] - 199
    assert new["input_stale"] is (new["input_age_s"] > stale_after)


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

    def having(self, attr: str) -> list[_Node]:
        """Every node below (and including) this one with attribute ``attr``."""
        return [n for n in self.iter() if attr in n.attrs]


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


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


TOKEN_READ = "dash-read-0123456789abcdef"
TOKEN_ALL = "dash-all-0123456789abcdef"
#: Where the screenshots of the three states go (docs/dashboard.md shows them).
DOCS = Path(__file__).resolve().parents[2] / "docs"
STEP_S = 10  # TIDEWISE_FORECAST_STEP_S of the daemon below
HORIZON = 30  # TIDEWISE_FORECAST_HORIZON_STEPS
STALE_AFTER_S = 3 * max(1, STEP_S)  # 3 x max(forecast interval, step)
#: One scaling target per state, each on its own entity: ``?target=`` shows one at a time.
TARGETS = {"fresh": ("web", "web-1"), "stale": ("web-stale", "web-2"),
           "fallback": ("web-new", "web-3")}


def _cpu(t: int, phase: float = 0.0) -> float:
    """A five-minute wave with a little jitter (percent)."""
    return 40.0 + 8.0 * math.sin(2 * math.pi * t / 300 + phase) + 0.6 * ((7 * t) % 5 - 2)


class Fleet:
    """The daemon of the browser tests and what was fed to it."""

    def __init__(self, url: str, started: int) -> None:
        self.url, self.started = url, started

    def page(self, **query: str) -> str:
        q = "&".join(f"{k}={v}" for k, v in {"refresh": "0", **query}.items())
        return f"{self.url}/dashboard/?{q}#token={TOKEN_READ}"

    def api(self, path: str, **params: str) -> dict:
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN_ALL}"},
                          timeout=30) as h:
            r = h.get(path, params=params)
            assert r.status_code == 200, r.text
            return r.json()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """``tidewise serve`` with three scaling targets, one per dashboard state.

    * fresh (``web`` on web-1): 15 minutes of cpu_util, kept fed every second;
    * stale (``web-stale`` on web-2): 20 minutes of cpu_util that ended 200 s ago, still
      forecast by the model (most of its context is observed), its input stale (> 30 s);
    * fallback (``web-new`` on web-3): fed every second but only for the last minute: too
      few buckets for a 30-step horizon, so the per-series fallback answers, and says why
      (for about four minutes: the fixture's tests take a fraction of that).
    """
    need_binaries("chromium")
    tmp = tmp_path_factory.mktemp("dash")
    write_report(tmp / "replay")
    tokens = f"viewer:{TOKEN_READ}:read,ops:{TOKEN_ALL}:ingest+read+act"
    with tidewise_daemon(
        tmp,
        TIDEWISE_TOKENS=tokens,
        TIDEWISE_REPLAY_REPORT=str(tmp / "replay"),
        TIDEWISE_FORECAST_INTERVAL_S="1",
        TIDEWISE_FORECAST_STEP_S=str(STEP_S),
        TIDEWISE_FORECAST_HORIZON_STEPS=str(HORIZON),
        TIDEWISE_FORECAST_CONTEXT_STEPS="120",
        TIDEWISE_MODEL_DIR=str(tmp / "models"),
    ) as url:
        now = int(time.time())
        vm = {"kind": "vm", "metric": "cpu_util"}
        samples = [{"entity": "web-1", **vm, "ts": now - 900 + i, "value": _cpu(now - 900 + i)}
                   for i in range(900)]
        samples += [{"entity": "web-2", **vm, "ts": now - 1400 + i,
                     "value": _cpu(now - 1400 + i, 2.0)}
                    for i in range(1200)]
        samples += [{"entity": "web-3", **vm, "ts": now - 60 + i, "value": 12.0 + i % 3}
                    for i in range(60)]
        # a counter: +5 per second, then a restart of the process (reset) and +3 per second
        samples += [{"entity": "web-1", "kind": "vm", "metric": "requests_total",
                     "ts": now - 60 + i, "value": 5.0 * i if i < 30 else 3.0 * (i - 29),
                     "unit": "count (counter)"} for i in range(60)]
        stop = threading.Event()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN_ALL}"},
                          timeout=30) as h:
            assert h.post("/v1/metrics", json={"samples": samples}).status_code == 200

            def feed() -> None:  # the live sources of web-1 and web-3
                with httpx.Client(base_url=url, timeout=30,
                                  headers={"Authorization": f"Bearer {TOKEN_ALL}"}) as f:
                    while not stop.wait(1.0):
                        t = int(time.time())
                        f.post("/v1/metrics", json={"samples": [
                            {"entity": "web-1", **vm, "ts": t, "value": _cpu(t)},
                            {"entity": "web-3", **vm, "ts": t, "value": 12.0 + t % 3}]})

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            for name, entity in TARGETS.values():
                body = {"name": name, "kind": "scaling", "entity": entity,
                        "metric": "cpu_util", "capacity": 25}
                assert h.post("/v1/targets", json=body).status_code == 201
            # the forecast job (every 1 s) forecasts each series, then decides per target
            for _name, entity in TARGETS.values():
                wait_for(lambda e=entity: h.get("/v1/forecasts/" + e,
                                                params={"metric": "cpu_util"}).status_code == 200,
                         60, what=f"a forecast of {entity}")
            wait_for(lambda: h.get("/v1/recommendations/web").json().get("ready"), 60,
                     what="a decision for target web")
        try:
            yield Fleet(url, now)
        finally:
            stop.set()
            feeder.join(timeout=10)


@pytest.fixture(scope="module")
def browser(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    binary = need_binaries("chromium")["chromium"]
    with chromium(binary, tmp_path_factory.mktemp("chromium")) as page:
        page.size(1280, 900)
        yield page


def _target_chart(dom: _Node, name: str) -> tuple[_Node, _Node, _Node]:
    card = dom.find("div", data_target=name)
    svg = card.find("div", **{"class": "chart"}).find("svg")
    return card, svg, card.find("ul", **{"class": "legend"})


def _times(svg: _Node, poly: _Node) -> list[float]:
    """The unix times of a polyline's points, read back through the chart's time scale."""
    t0, t1 = float(svg.attrs["data-t0"]), float(svg.attrs["data-t1"])
    x0, x1 = float(svg.attrs["data-x0"]), float(svg.attrs["data-x1"])
    xs = [float(p.split(",")[0]) for p in poly.attrs["points"].split()]
    return [t0 + (x - x0) / (x1 - x0) * (t1 - t0) for x in xs]


def _check_legend_matches(svg: _Node, legend: _Node) -> list[str]:
    drawn = [n.attrs["data-series"] for n in svg.having("data-series")]
    listed = [n.attrs["data-series"] for n in legend.find_all("li")]
    assert listed == list(dict.fromkeys(drawn)), (listed, drawn)
    return listed


def _load(browser: Page, fleet: Fleet, **query: str) -> _Node:
    browser.open(fleet.page(**query))
    dom = parse_dom(browser.html())
    assert dom.find(id="status").text().startswith("updated "), dom.find(id="status").text()
    return dom


def test_fresh_state_demand_fan_capacity_and_legend(browser: Page, fleet: Fleet) -> None:
    dom = _load(browser, fleet, target="web")
    # nothing to warn about: the input is fed every second, the model forecasts it
    assert dom.find(id="banners").text() == ""
    assert not dom.find(id="banners").find_all("p")
    fc = fleet.api("/v1/forecasts/web-1", metric="cpu_util")
    assert fc["fallback"] is False and fc["input_stale"] is False and fc["step_s"] == STEP_S

    card, svg, legend = _target_chart(dom, "web")
    assert "warn" not in card.attrs["class"]
    listed = _check_legend_matches(svg, legend)
    # three bands drawn, three band entries, each with its coverage
    assert listed == ["band-90", "band-80", "band-50", "median", "demand", "capacity", "now"]
    labels = {li.attrs["data-series"]: li.text().strip() for li in legend.find_all("li")}
    assert labels["band-90"] == "forecast 90 % interval (5–95 % quantiles)"
    assert labels["band-80"] == "forecast 80 % interval (10–90 % quantiles)"
    assert labels["band-50"] == "forecast 50 % interval (25–75 % quantiles)"
    assert all(len(b.attrs["points"].split()) == 2 * HORIZON for b in svg.find_all("polygon"))
    assert len(_times(svg, svg.find("polyline", data_series="median"))) == HORIZON

    # demand: one point per forecast bucket, spaced exactly step_s apart (raw is off)
    demand = _times(svg, svg.find("polyline", data_series="demand"))
    gaps = [b - a for a, b in zip(demand, demand[1:], strict=False)]
    assert len(demand) >= 85 and all(abs(g - STEP_S) < 1e-6 for g in gaps), gaps
    assert all(round(t) % STEP_S == 0 for t in demand)  # epoch-aligned buckets, as forecast
    assert not svg.find_all("polyline", data_series="raw")
    assert labels["demand"] == f"demand, {STEP_S}-s means ({len(demand)})"

    # capacity: the desired replicas x 25 percent, held over the forecast
    cap = svg.find("polyline", data_series="capacity")
    assert labels["capacity"] == "capacity: desired replicas × 25 percent per replica"
    drawn = _times(svg, svg.find("polyline", data_series="median"))
    assert _times(svg, cap)[-1] == pytest.approx(drawn[-1], abs=1e-6)  # to the fan's end
    # ... the forecast the API serves (refreshed every second: its steps may have moved on
    # by one bucket since the page read it)
    assert fc["steps"][-1]["ts"] - drawn[-1] in (0, STEP_S)
    # units on both axes
    assert svg.find("text", **{"class": "label axis-y"}).text() == "cpu_util (percent)"
    assert svg.find("text", **{"class": "label axis-x"}).text() == "time (UTC)"
    last = card.find("span", **{"class": "last"}).text()
    assert last.startswith(f"last {STEP_S}-s mean ") and " percent at " in last

    # the replay comparison drawn as the PNG draws it, a tooltip with the knobs on hover
    browser.hover("#replay-plot circle[data-tip*='keepalive_min=30']")
    tip = browser.js("[document.getElementById('tooltip').hidden,"
                     " document.getElementById('tooltip').innerText]")
    assert tip[0] is False
    assert tip[1].split("\n") == ["keepalive-10m", "keepalive_min=30",
                                  "wasted_memory_gb_s 30 GB·s",
                                  "cold_start_rate 0.15 share of invocations"]
    DOCS.mkdir(exist_ok=True)
    browser.screenshot(DOCS / "dashboard-fresh.png", full_page=True)
    assert png_size(DOCS / "dashboard-fresh.png")[0] == 1280


def test_raw_samples_are_optional(browser: Page, fleet: Fleet) -> None:
    dom = _load(browser, fleet, target="web", raw="1")
    assert browser.js("document.getElementById('show-raw').checked") is True
    _, svg, legend = _target_chart(dom, "web")
    listed = _check_legend_matches(svg, legend)
    assert listed[:5] == ["band-90", "band-80", "band-50", "median", "raw"]
    raw = _times(svg, svg.find("polyline", data_series="raw"))
    # the fed 15 minutes are every second (the live feed after them may miss one under load)
    fed = [t for t in raw if t < fleet.started]
    assert len(fed) >= 800 and all(abs(b - a - 1) < 1e-4 for a, b in zip(fed, fed[1:],
                                                                          strict=False))
    assert len(_times(svg, svg.find("polyline", data_series="demand"))) < len(raw) / 9


def test_stale_state_banner_names_the_series(browser: Page, fleet: Fleet) -> None:
    dom = _load(browser, fleet, target="web-stale")
    fc = fleet.api("/v1/forecasts/web-2", metric="cpu_util")
    assert fc["input_stale"] is True and fc["fallback"] is False
    assert fc["input_last_ts"] == fleet.started - 201
    banners = dom.find(id="banners").find_all("p")
    assert [b.attrs["data-kind"] for b in banners] == ["stale"]
    text = banners[0].text()
    assert text.startswith("Stale input: web-2 / cpu_util (target web-stale) — newest sample ")
    assert f"stale after {STALE_AFTER_S} s" in text
    card, svg, legend = _target_chart(dom, "web-stale")
    assert "warn" in card.attrs["class"].split()
    _check_legend_matches(svg, legend)
    browser.screenshot(DOCS / "dashboard-stale.png", full_page=True)


def test_fallback_state_banner_names_the_series_and_reason(browser: Page, fleet: Fleet) -> None:
    # web-3 is fed every second and forecast every second: its history grows by a bucket
    # while the page loads, so the banner must name the reason of a forecast served between
    # the two reads around the load (the count of buckets in between, nothing else changed)
    before = fleet.api("/v1/forecasts/web-3", metric="cpu_util")
    dom = _load(browser, fleet, target="web-new")
    fc = fleet.api("/v1/forecasts/web-3", metric="cpu_util")
    assert fc["fallback"] is True and fc["input_stale"] is False, fc
    banners = dom.find(id="banners").find_all("p")
    assert [b.attrs["data-kind"] for b in banners] == ["fallback"]
    counts = [int(re.search(r"only (\d+) buckets of history", f["reason"]).group(1))
              for f in (before, fc)]
    assert fc["model"] == before["model"]
    assert banners[0].text() in {
        f"Fallback forecast: web-3 / cpu_util (target web-new) — {fc['model']}, because "
        + re.sub(r"only \d+ buckets", f"only {n} buckets", fc["reason"])
        for n in range(counts[0], counts[1] + 1)
    }, (banners[0].text(), before["reason"], fc["reason"])
    card, svg, legend = _target_chart(dom, "web-new")
    assert "warn" in card.attrs["class"].split()
    _check_legend_matches(svg, legend)
    browser.screenshot(DOCS / "dashboard-fallback.png", full_page=True)


def test_every_target_series_browser_and_replay_table(browser: Page, fleet: Fleet) -> None:
    dom = _load(browser, fleet)
    # all three targets, and on top one warning per troubled target
    kinds = sorted(b.attrs["data-kind"] for b in dom.find(id="banners").find_all("p"))
    assert kinds == ["fallback", "stale"]
    cards = [n.attrs["data-target"] for n in dom.find(id="targets").having("data-target")]
    assert sorted(cards) == ["web", "web-new", "web-stale"]

    card = dom.find("div", data_target="web")
    assert card.find("div", **{"class": "meta"}).text() == (
        "scaling · policy bayes · web-1 / cpu_util"
    )
    rec = fleet.api("/v1/recommendations/web")
    assert "replicas" in card.find("span", **{"class": "why"}).text()
    assert card.find("span", **{"class": "action"}).text().startswith("replicas=")
    first = fleet.api("/v1/actions", target="web")["actions"][0]
    cells = [td.text() for td in card.find("table").find("tbody").find_all("td")]
    assert f"replicas={first['desired']['replicas']}" in cells
    assert rec["ready"] is True and card.find_all("div", **{"class": "chart small desired"})

    # the series browser: every fed series, units on the axis
    options = [o.text() for o in dom.find("select", id="series-pick").find_all("option")]
    assert options == ["web-1 / cpu_util", "web-1 / requests_total", "web-2 / cpu_util",
                       "web-3 / cpu_util"]
    svg = dom.find(id="series-chart").find("svg")
    assert svg.find("text", **{"class": "label axis-y"}).text() == "cpu_util (percent)"
    _check_legend_matches(svg, dom.find(id="series-chart").find("ul"))

    # the replay comparison: rows by cost, Pareto front starred, figures as in the file
    rows = dom.find(id="replay-table").find("tbody").find_all("tr")
    got = [(r.attrs["data-policy"], [c.text() for c in r.find_all("td")], r.attrs["class"])
           for r in rows]
    assert got == [
        ("oracle", ["oracle", "", "0", "0"], ""),
        ("bayes", ["bayes", "", "5", "0.5"], "pareto"),
        ("keepalive-10m", ["keepalive-10m", "keepalive_min=10", "10", "0.2"], "pareto"),
        ("hybrid-histogram", ["hybrid-histogram", "", "20", "0.1"], "pareto"),
        ("keepalive-10m", ["keepalive-10m", "keepalive_min=30", "30", "0.15"], ""),
    ]
    plot = dom.find(id="replay-plot")
    dots = plot.find("svg").find_all("circle")
    assert sorted(d.attrs["class"] for d in dots) == ["dot", "dot", "dot pareto", "dot pareto",
                                                      "dot pareto"]
    # the orientation of cost_vs_sla.png: SLA misses on x, cost on y (SVG y grows down)
    pts = {(d.attrs["data-family"], d.attrs["data-tip"].split("\n")[1]):
           (float(d.attrs["cx"]), float(d.attrs["cy"])) for d in dots}
    by_sla = sorted(REPORT_POINTS, key=lambda k: REPORT_POINTS[k][1])
    by_cost = sorted(REPORT_POINTS, key=lambda k: REPORT_POINTS[k][0])
    assert sorted(pts, key=lambda k: pts[k][0]) == by_sla
    assert sorted(pts, key=lambda k: -pts[k][1]) == by_cost
    labels = [t.text() for t in plot.find("svg").find_all("text") if "label" in
              t.attrs.get("class", "")]
    assert labels == [
        "SLA misses: cold start rate (share of invocations), lower is better",
        "cost: wasted memory gb s (GB·s), lower is better",
    ]
    legend = [li.attrs["data-series"] for li in plot.find("ul").find_all("li")]
    assert legend == list(REPORT["policies"])
    assert dom.find(id="replay-meta").text().startswith(
        "scenario serverless · trace invocations.csv · written ")


#: (family, knobs as the tooltip shows them) -> (cost, SLA) of :data:`REPORT`.
REPORT_POINTS = {
    (fam, ", ".join(f"{k}={v}" for k, v in run["params"].items()) or "default knobs"):
    (run["totals"]["wasted_memory_gb_s"], run["totals"]["cold_start_rate"])
    for fam, runs in REPORT["policies"].items() for run in runs
}


def test_counter_rate_and_missing_token(browser: Page, fleet: Fleet) -> None:
    # a counter is drawn as its per-second rate, the reset counted from 0
    dom = _load(browser, fleet, entity="web-1", metric="requests_total")
    assert dom.find(id="series-note").text() == (
        "web-1 / requests_total: 60 points (raw, 1 s), per-second rate of the counter, "
        "last 3 count/s"
    )
    svg = dom.find(id="series-chart").find("svg")
    xy = [p.split(",") for p in svg.find("polyline", data_series="series").attrs["points"].split()]
    heights = [round(float(y), 6) for _, y in xy]
    # 59 rates: 29 of 5/s, then the reset (3/s) and 29 more of 3/s: two levels, 5 above 3
    assert len(heights) == 59 and len(set(heights[:29])) == 1 and len(set(heights[29:])) == 1
    assert heights[0] < heights[29]  # SVG y grows downwards
    assert svg.find("text", **{"class": "label axis-y"}).text() == "requests_total (count/s)"

    # without a token the page says what is missing instead of showing data
    browser.js("localStorage.clear()")
    browser.open(f"{fleet.url}/dashboard/?refresh=0&bare=1")
    status = parse_dom(browser.html()).find(id="status").text()
    assert status.startswith("401: ") and "enter a token with scope read" in status
