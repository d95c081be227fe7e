// 监控: trucks moving on the map in real time (Server-Sent Events read with fetch, so the
// token travels in a header), each truck's status, and its track for today.
import { addDays, api, clear, fmtAge, h, midnightIso, qs, session, showError, textOf, todayIn } from "./core.js";
import { t } from "./i18n.js";
import { STATUS_COLOUR } from "./map.js";

const L = window.L;
const STATUSES = ["moving", "at_point", "unloading", "parked", "stopped", "offline", "no_data"];

export class LivePage {
  constructor() {
    this.trucks = new Map();
    this.markers = new Map();
    this.abort = null;
    this.tick = 0;
    this.selected = null;
    this.onZoom = () => this.render();
  }

  async mount(ctx) {
    this.ctx = ctx;
    this.el = {
      state: h("span", { class: "muted", "data-testid": "live-state" }),
      counts: h("div", { class: "stats" }),
      list: h("div", { "data-testid": "truck-list" }),
      track: h("div"),
    };
    clear(ctx.panel,
      h("h2", {}, t("live.title"), this.el.state),
      this.el.counts, this.el.track, this.el.list);
    this.tick = setInterval(() => this.render(), 5000);
    ctx.map.map.on("zoomend", this.onZoom);
    ctx.map.setLegend(STATUSES.map((s) => [STATUS_COLOUR[s], t(`status.${s}`)]));
    this.connect();
  }

  unmount() {
    clearInterval(this.tick);
    this.ctx?.map.map.off("zoomend", this.onZoom);
    if (this.abort) this.abort.abort();
    this.abort = null;
  }

  async refresh(ctx) {
    this.unmount();
    this.trucks.clear();
    this.markers.clear();
    this.selected = null;
    ctx.map.clear("trucks", "track");
    clear(this.el.track);
    await this.mount(ctx);
  }

  setState(connected) {
    clear(this.el.state, h("span", { class: `live-dot${connected ? " on" : ""}` }),
      connected ? t("live.connected") : t("live.reconnecting"));
  }

  async connect() {
    const controller = new AbortController();
    this.abort = controller;
    let delay = 1000;
    while (!controller.signal.aborted) {
      try {
        const response = await fetch(`/api/v1/positions/stream${qs({ district_id: this.ctx.district })}`, {
          headers: { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" },
          signal: controller.signal,
        });
        if (response.status === 401) { session.token = null; session.onLogout(); return; }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        this.setState(true);
        delay = 1000;
        await this.read(response.body);
      } catch (err) {
        if (controller.signal.aborted) return;
        console.warn("live stream:", err);
      }
      this.setState(false);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (data) this.onEvent(event, JSON.parse(data));
      }
    }
  }

  onEvent(event, data) {
    if (event === "logout") { session.token = null; session.onLogout(); return; }
    if (event === "snapshot") this.trucks.clear();
    for (const truck of data.trucks) {
      if (truck.removed) this.trucks.delete(truck.truck_id);
      else this.trucks.set(truck.truck_id, { ...truck, received: Date.now(), server_at: Date.parse(data.at) || Date.now() });
    }
    this.render();
  }

  // Trucks parked on one spot (a depot) are fanned out on a small circle around it,
  // so that each can be seen, hovered and clicked.
  placements() {
    const { map } = this.ctx;
    const groups = new Map();
    for (const [id, truck] of this.trucks) {
      if (truck.lat === null) continue;
      const key = `${truck.lat.toFixed(4)},${truck.lon.toFixed(4)}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(id);
    }
    const at = new Map();
    for (const ids of groups.values()) {
      ids.sort();
      ids.forEach((id, i) => {
        const truck = this.trucks.get(id);
        const ll = map.ll(truck.lat, truck.lon);
        if (ids.length === 1) { at.set(id, ll); return; }
        const radius = 14 + 2 * ids.length;
        const angle = (2 * Math.PI * i) / ids.length;
        const centre = map.map.latLngToLayerPoint(ll);
        at.set(id, map.map.layerPointToLatLng(centre.add([radius * Math.cos(angle), radius * Math.sin(angle)])));
      });
    }
    return at;
  }

  render() {
    const { map } = this.ctx;
    const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    const labels = this.trucks.size <= 40;
    const placed = this.placements();
    for (const [id, truck] of this.trucks) {
      counts[truck.status] = (counts[truck.status] || 0) + 1;
      let marker = this.markers.get(id);
      if (truck.lat === null) {
        if (marker) { marker.remove(); this.markers.delete(id); }
        continue;
      }
      const at = placed.get(id);
      const style = {
        radius: 8, color: "#fff", weight: 2, fillOpacity: 1,
        fillColor: STATUS_COLOUR[truck.status] || "#555",
      };
      if (!marker) {
        marker = L.circleMarker(at, { ...style, renderer: map.svg, className: `truck-marker truck-${id}` })
          .on("click", () => this.select(id).catch(showError))
          .addTo(map.layers.trucks);
        marker.bindTooltip(textOf(truck.plate), {
          permanent: labels, direction: "right", offset: [10, 0], className: "truck-label",
        });
        this.markers.set(id, marker);
      } else {
        marker.setLatLng(at);
        marker.setStyle(style);
      }
      const path = marker.getElement?.();
      if (path) { path.dataset.truckId = id; path.dataset.status = truck.status; }
    }
    clear(this.el.counts, STATUSES.filter((s) => counts[s]).map((s) => h("div", { class: "stat" },
      h("b", { style: { color: STATUS_COLOUR[s] }, "data-testid": `count-${s}` }, counts[s]),
      h("small", {}, t(`status.${s}`)))));
    const rows = [...this.trucks.values()].sort((a, b) => a.truck_id.localeCompare(b.truck_id));
    clear(this.el.list, h("table", { class: "list" }, rows.map((truck) => {
      // Age on the server's clock (`at` of the snapshot or update), not the browser's.
      const age = truck.recorded_at ? Math.max(0, (truck.server_at - Date.parse(truck.recorded_at) + Date.now() - truck.received) / 1000) : null;
      return h("tr", {
        class: `clickable${truck.truck_id === this.selected ? " selected" : ""}`,
        dataset: { truckId: truck.truck_id, status: truck.status, lat: truck.lat ?? "", lon: truck.lon ?? "" },
        onclick: () => this.select(truck.truck_id).catch(showError),
      },
      h("td", {}, truck.plate), h("td", {}, h("span", { class: `chip ${truck.status}` }, t(`status.${truck.status}`))),
      h("td", { class: "muted" }, truck.site_id || (truck.speed_kmh ? `${Math.round(truck.speed_kmh)} km/h` : "")),
      h("td", { class: "muted" }, fmtAge(age)));
    })));
  }

  async select(truckId) {
    this.selected = truckId;
    const { map } = this.ctx;
    const truck = this.trucks.get(truckId);
    if (truck?.lat !== null && truck?.lat !== undefined) map.map.panTo(map.ll(truck.lat, truck.lon));
    const tz = session.config.timezone;
    const date = this.ctx.date || todayIn(tz);
    const range = { start_at: midnightIso(date, tz), end_at: midnightIso(addDays(date, 1), tz), max_points: 3000 };
    const track = await api(`/trucks/${encodeURIComponent(truckId)}/track${qs(range)}`);
    map.clear("track");
    if (track.points.length > 1) {
      const line = L.polyline(track.points.map((p) => map.ll(p.lat, p.lon)), { color: "#e74c3c", weight: 3, opacity: 0.8 })
        .addTo(map.layers.track);
      map.fitTo(line.getBounds());
    }
    clear(this.el.track, h("p", { "data-testid": "track-info" },
      `${t("live.track")}: ${truck?.plate || truckId} · ${track.total_fixes} ${t("live.fixes")}`
      + (track.downsampled ? ` (${track.points.length})` : ""), " ",
      h("a", { href: `#/playback?truck=${encodeURIComponent(truckId)}`, "data-testid": "track-playback" }, t("live.playback"))));
    this.render();
  }
}
