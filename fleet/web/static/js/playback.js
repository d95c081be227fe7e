// 轨迹回放: a truck's day played back — a time slider and a play speed, the track drawn
// up to that time with the truck's heading, its stops (the stays the alerts found, with
// the sites they were matched to), the planned route beside the actual one; and every
// truck's progress against the plan (done / due / late, by the server's clock).
import {
  addDays, api, clear, fmtDuration, fmtTime, h, midnightIso, platesOf, qs, session, showError, table,
} from "./core.js";
import { t } from "./i18n.js";
import { LEDGER_COLOUR } from "./map.js";

const L = window.L;
const SPEEDS = [10, 60, 300, 900];
const ACTUAL = "#c0392b";
const PLANNED = "#1f77b4";

function hashParams() {
  const query = location.hash.split("?")[1] || "";
  return new URLSearchParams(query);
}

// Index of the last fix at or before `ms` (fixes sorted by time).
function indexAt(times, ms) {
  let lo = 0;
  let hi = times.length - 1;
  if (ms < times[0]) return 0;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (times[mid] <= ms) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString("en-GB", { hour12: false, timeZone: session.config?.timezone });
}

export class PlaybackPage {
  constructor() {
    this.truckId = null;
    this.playing = false;
    this.speed = 60;
    this.frame = 0;
    this.layers = null;
  }

  async mount(ctx) {
    this.ctx = ctx;
    const params = hashParams();
    this.truckId = params.get("truck");
    this.focusPoint = params.get("point");
    this.el = {
      root: h("div", { "data-testid": "playback" }),
      progress: h("div", { "data-testid": "pb-progress" }),
      controls: h("div", { class: "pb-controls" }),
      info: h("p", { class: "muted", "data-testid": "pb-info" }),
      stops: h("div", { "data-testid": "pb-stops" }),
    };
    clear(ctx.panel, h("h2", {}, t("pb.title")), this.el.root);
    clear(this.el.root, this.el.controls, this.el.info, h("h4", {}, t("pb.stops")), this.el.stops,
      h("h4", {}, t("pb.progress")), this.el.progress);
    ctx.map.setLegend([[ACTUAL, t("legend.track"), { line: true }], [PLANNED, t("legend.route_planned"), { line: true, dashed: true }]]);
    await this.refresh(ctx);
  }

  unmount() {
    this.pause();
  }

  async refresh(ctx) {
    this.ctx = ctx;
    this.pause();
    const { district, date } = ctx;
    const [ledger, plans, plates] = await Promise.all([
      api(`/ledger${qs({ service_date: date, district_id: district })}`),
      api(`/plans${qs({ district_id: district, service_date: date })}`),
      platesOf(district),
    ]);
    this.plates = plates;
    this.ledger = ledger.entries;
    this.now = Date.parse(ledger.now);
    const published = plans.find((p) => p.status === "published");
    this.plan = published ? await api(`/plans/${published.plan_id}`) : null;
    this.renderProgress();
    if (this.truckId && !plates.has(this.truckId)) this.truckId = null;
    this.renderControls();
    if (this.truckId) await this.load(this.truckId);
    else this.clearTrack();
  }

  plate(truckId) {
    return this.plates.get(truckId) || truckId;
  }

  // Done / due / late per truck, from the ledger of the day (what the alert rules found)
  // held against the plan's times at the server's clock (the browser's may be off).
  renderProgress() {
    const { now } = this;
    const byTruck = new Map();
    for (const truckId of this.plates.keys()) byTruck.set(truckId, { truckId, done: 0, due: 0, late: 0 });
    for (const e of this.ledger) {
      const row = byTruck.get(e.planned_truck_id);
      if (!row) continue;
      if (e.status === "cleared") row.done += 1;
      else if (e.status === "pending" && !(e.planned_arrival_at && Date.parse(e.planned_arrival_at) < now)) row.due += 1;
      else row.late += 1;
    }
    const rows = [...byTruck.values()].filter((r) => r.done + r.due + r.late > 0)
      .sort((a, b) => this.plate(a.truckId).localeCompare(this.plate(b.truckId)));
    if (!rows.length) {
      clear(this.el.progress, h("p", { class: "muted" }, this.plan ? t("common.none") : t("pb.no_plan")));
      return;
    }
    clear(this.el.progress, table(rows, [
      [t("col.truck"), (r) => this.plate(r.truckId)],
      [t("col.done"), (r) => h("span", { style: { color: LEDGER_COLOUR.cleared } }, r.done)],
      [t("col.remaining"), (r) => r.due],
      [t("col.late"), (r) => h("span", { class: r.late ? "error" : "" }, r.late)],
      [t("plan.progress"), (r) => h("div", { class: "progress" }, h("div", {
        style: { width: `${Math.round((100 * r.done) / (r.done + r.due + r.late))}%` },
      }))],
    ], (r) => ({
      class: `clickable${r.truckId === this.truckId ? " selected" : ""}`, dataset: { truckId: r.truckId },
      onclick: () => this.choose(r.truckId),
    })));
  }

  renderControls() {
    const trucks = [...this.plates.entries()].sort((a, b) => a[1].localeCompare(b[1]));
    this.slider = h("input", {
      type: "range", min: 0, max: 1, step: 1, value: 0, "data-testid": "pb-slider", class: "pb-slider",
      oninput: (e) => { this.pause(); this.show(Number(e.target.value)); },
    });
    this.playButton = h("button", { "data-testid": "pb-play", onclick: () => (this.playing ? this.pause() : this.play()) }, t("pb.play"));
    this.timeLabel = h("span", { class: "pb-time", "data-testid": "pb-time" }, "—");
    clear(this.el.controls,
      h("div", { class: "row" },
        h("label", { class: "inline" }, t("pb.truck"),
          h("select", { "data-testid": "pb-truck", onchange: (e) => this.choose(e.target.value) },
            h("option", { value: "" }, t("pb.choose")),
            trucks.map(([id, plate]) => h("option", { value: id, selected: id === this.truckId }, plate)))),
        h("label", { class: "inline" }, t("pb.speed"),
          h("select", { "data-testid": "pb-speed", onchange: (e) => { this.speed = Number(e.target.value); } },
            SPEEDS.map((s) => h("option", { value: s, selected: s === this.speed }, `${s}×`))))),
      h("div", { class: "row" }, this.playButton, this.slider, this.timeLabel));
  }

  choose(truckId) {
    const focus = this.focusPoint ? `&point=${encodeURIComponent(this.focusPoint)}` : "";
    history.replaceState(null, "", `#/playback${truckId ? `?truck=${encodeURIComponent(truckId)}${focus}` : ""}`);
    this.truckId = truckId || null;
    this.renderProgress();
    if (truckId) this.load(truckId).catch(showError);
    else this.clearTrack();
  }

  clearTrack() {
    this.ctx.map.clear("track", "routes");
    this.track = null;
    this.el.root.dataset.ready = "";
    clear(this.el.info, t("pb.choose"));
    clear(this.el.stops);
  }

  async load(truckId) {
    const started = performance.now();
    this.pause();
    this.el.root.dataset.ready = "";
    const { map, date } = this.ctx;
    const tz = session.config.timezone;
    const range = { start_at: midnightIso(date, tz), end_at: midnightIso(addDays(date, 1), tz), max_points: 20000 };
    const route = this.plan?.routes.find((r) => r.truck_id === truckId) || null;
    const [track, stays, geo] = await Promise.all([
      api(`/trucks/${encodeURIComponent(truckId)}/track${qs(range)}`),
      api(`/trucks/${encodeURIComponent(truckId)}/stays${qs({ service_date: date })}`),
      route ? api(`/plans/${this.plan.plan_id}/routes.geojson`) : Promise.resolve(null),
    ]);
    if (truckId !== this.truckId) return; // another truck was chosen meanwhile
    map.clear("track", "routes");
    const bounds = L.latLngBounds([]);
    const planned = geo?.features.find((f) => f.id === truckId);
    if (planned) {
      const line = map.geoJSON(planned, { style: { color: PLANNED, weight: 4, opacity: 0.6, dashArray: "8 6" }, interactive: false })
        .addTo(map.layers.routes);
      bounds.extend(line.getBounds());
    }
    this.points = track.points;
    this.times = track.points.map((p) => Date.parse(p.recorded_at));
    this.latlngs = track.points.map((p) => L.latLng(...map.ll(p.lat, p.lon)));
    if (!this.points.length) {
      clear(this.el.info, t("pb.no_track"));
      clear(this.el.stops);
      map.fitTo(bounds);
      this.el.root.dataset.ready = "1";
      return;
    }
    // The whole day faint, the part up to the slider's time strong, the truck on its heading.
    L.polyline(this.latlngs, { color: ACTUAL, weight: 2, opacity: 0.2, interactive: false }).addTo(map.layers.track);
    this.drawn = L.polyline([], { color: ACTUAL, weight: 4, opacity: 0.9, interactive: false }).addTo(map.layers.track);
    this.arrow = h("div", { class: "pb-arrow" });
    this.head = L.marker(this.latlngs[0], {
      icon: L.divIcon({ className: "pb-head", html: this.arrow, iconSize: [22, 22], iconAnchor: [11, 11] }),
      interactive: false, keyboard: false,
    }).addTo(map.layers.track);
    for (const ll of this.latlngs) bounds.extend(ll);
    map.fitTo(bounds);
    const t0 = this.times[0];
    this.slider.max = String(Math.max(1, Math.round((this.times[this.times.length - 1] - t0) / 1000)));
    this.stops = stays.map((s) => this.stop(s));
    this.renderStops(route);
    clear(this.el.info, `${t("pb.actual")} ${this.plate(truckId)} · ${track.total_fixes} ${t("pb.fixes")}`
      + (track.downsampled ? ` (${track.points.length})` : "")
      + (route ? ` · ${t("pb.planned")} #${this.plan.plan_id}` : ` · ${t("pb.no_plan")}`));
    // Start at the focused point's stop, else at the end of the day so far.
    const focus = this.stops.find((s) => s.pointId && s.pointId === this.focusPoint);
    this.show(focus ? Math.round((focus.startMs - t0) / 1000) : Number(this.slider.max));
    this.el.root.dataset.ready = "1";
    this.el.root.dataset.loadMs = String(Math.round(performance.now() - started));
  }

  // A stay as the stops table reads it: its times and the site it was matched to.
  stop(stay) {
    const kind = stay.site_kind;
    const site = kind ? `${stay.site_id} ${stay.site_name || ""}`.trim() : "";
    return {
      startMs: Date.parse(stay.arrived_at),
      endMs: Date.parse(stay.departed_at),
      kind,
      siteId: stay.site_id,
      pointId: kind === "point" ? stay.site_id : null,
      label: !kind ? t("pb.unmatched") : kind === "point" ? site : `${t(`site.${kind}`)} ${site}`,
    };
  }

  renderStops(route) {
    const eta = new Map((route?.stops || []).filter((s) => s.ref_id).map((s) => [`${s.kind}:${s.ref_id}`, s.arrival_at]));
    if (!this.stops.length) {
      clear(this.el.stops, h("p", { class: "muted" }, t("common.none")));
      return;
    }
    const t0 = this.times[0];
    clear(this.el.stops, table(this.stops, [
      [t("col.arrive"), (s) => fmtTime(new Date(s.startMs).toISOString())],
      [t("col.depart"), (s) => fmtTime(new Date(s.endMs).toISOString())],
      [t("col.dwell"), (s) => fmtDuration((s.endMs - s.startMs) / 1000)],
      [t("col.place"), (s) => s.label],
      [t("col.planned"), (s) => (s.kind && eta.has(`${s.kind}:${s.siteId}`) ? fmtTime(eta.get(`${s.kind}:${s.siteId}`)) : "—")],
    ], (s) => ({
      class: `clickable${s.pointId && s.pointId === this.focusPoint ? " selected" : ""}`,
      dataset: { pointId: s.pointId || "" },
      onclick: () => { this.pause(); this.show(Math.round((s.startMs - t0) / 1000)); },
    }), { class: "list pb-stops" }));
  }

  // Draw the day up to `offsetS` seconds after the first fix.
  show(offsetS) {
    if (!this.times?.length) return;
    this.offsetS = offsetS;
    const ms = this.times[0] + offsetS * 1000;
    const i = indexAt(this.times, ms);
    this.slider.value = String(Math.round(offsetS));
    this.drawn.setLatLngs(this.latlngs.slice(0, i + 1));
    this.head.setLatLng(this.latlngs[i]);
    const p = this.points[i];
    const heading = p.heading_deg ?? (i > 0 ? this.bearing(i - 1, i) : 0);
    this.arrow.style.transform = `rotate(${heading}deg)`;
    this.timeLabel.textContent = `${clock(ms)} · ${Math.round(p.speed_kmh ?? 0)} ${t("pb.speed_kmh")}`;
    this.el.root.dataset.index = String(i);
  }

  bearing(a, b) {
    const p = this.points[a];
    const q = this.points[b];
    const y = Math.sin(((q.lon - p.lon) * Math.PI) / 180) * Math.cos((q.lat * Math.PI) / 180);
    const x = Math.cos((p.lat * Math.PI) / 180) * Math.sin((q.lat * Math.PI) / 180)
      - Math.sin((p.lat * Math.PI) / 180) * Math.cos((q.lat * Math.PI) / 180) * Math.cos(((q.lon - p.lon) * Math.PI) / 180);
    return (Math.atan2(y, x) * 180) / Math.PI;
  }

  play() {
    if (!this.times?.length) return;
    const end = Number(this.slider.max);
    if (this.offsetS >= end) this.show(0);
    this.playing = true;
    this.playButton.textContent = t("pb.pause");
    let last = performance.now();
    const step = (now) => {
      if (!this.playing) return;
      // The offset keeps its fraction of a second; the slider shows whole seconds.
      const next = Math.min(this.offsetS + ((now - last) / 1000) * this.speed, end);
      last = now;
      this.show(next);
      if (next >= end) { this.pause(); return; }
      this.frame = requestAnimationFrame(step);
    };
    this.frame = requestAnimationFrame(step);
  }

  pause() {
    this.playing = false;
    cancelAnimationFrame(this.frame);
    if (this.playButton) this.playButton.textContent = t("pb.play");
  }
}
