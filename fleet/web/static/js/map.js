// The map: the district's own roads (from the API) as the base layer, an optional tile
// layer under them, and overlay layers the pages fill. Coordinates are stored in
// WGS-84; with GCJ-02 tiles (AMap, Tencent) everything is shifted for display.
import { api, clear, h, qs, textOf } from "./core.js";
import { t } from "./i18n.js";

const L = window.L;
const PI = Math.PI;
const A = 6378245.0;
const EE = 0.00669342162296594323;

function outOfChina(lat, lon) {
  return lon < 72.004 || lon > 137.8347 || lat < 0.8293 || lat > 55.8271;
}
function tLat(x, y) {
  let r = -100 + 2 * x + 3 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
  r += ((20 * Math.sin(6 * x * PI) + 20 * Math.sin(2 * x * PI)) * 2) / 3;
  r += ((20 * Math.sin(y * PI) + 40 * Math.sin((y / 3) * PI)) * 2) / 3;
  r += ((160 * Math.sin((y / 12) * PI) + 320 * Math.sin((y * PI) / 30)) * 2) / 3;
  return r;
}
function tLon(x, y) {
  let r = 300 + x + 2 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
  r += ((20 * Math.sin(6 * x * PI) + 20 * Math.sin(2 * x * PI)) * 2) / 3;
  r += ((20 * Math.sin(x * PI) + 40 * Math.sin((x / 3) * PI)) * 2) / 3;
  r += ((150 * Math.sin((x / 12) * PI) + 300 * Math.sin((x / 30) * PI)) * 2) / 3;
  return r;
}
export function wgs84ToGcj02(lat, lon) {
  if (outOfChina(lat, lon)) return [lat, lon];
  let dLat = tLat(lon - 105, lat - 35);
  let dLon = tLon(lon - 105, lat - 35);
  const radLat = (lat / 180) * PI;
  let magic = Math.sin(radLat);
  magic = 1 - EE * magic * magic;
  const sq = Math.sqrt(magic);
  dLat = (dLat * 180) / (((A * (1 - EE)) / (magic * sq)) * PI);
  dLon = (dLon * 180) / ((A / sq) * Math.cos(radLat) * PI);
  return [lat + dLat, lon + dLon];
}

const ROAD_STYLE = {
  arterial: { color: "#8a96a3", weight: 4 },
  secondary: { color: "#9aa5b1", weight: 3 },
  local: { color: "#b3bcc6", weight: 2 },
  lane: { color: "#c9a27e", weight: 1.5, dashArray: "3 3" },
};
export const STREAM_COLOUR = {
  other: "#5d6d7e", kitchen: "#1e8449", recyclable: "#2e86c1", hazardous: "#c0392b", mixed: "#7d3c98",
};
export const STATUS_COLOUR = {
  moving: "#2e86c1", at_point: "#1e8449", unloading: "#7d3c98", parked: "#5d6d7e",
  stopped: "#d68910", offline: "#c0392b", no_data: "#aab2bd",
};
export const LEDGER_COLOUR = {
  cleared: "#1e8449", partial: "#d68910", missed: "#c0392b", unverifiable: "#7f8c8d", pending: "#2e86c1",
};

export class CityMap {
  constructor(element, config) {
    this.gcj = config.map.tile_crs === "gcj02";
    // One canvas for every vector layer: a second canvas (Leaflet makes one per
    // renderer) would lie over the first and take its hover and clicks.
    this.renderer = L.canvas({ padding: 0.3 });
    this.map = L.map(element, { renderer: this.renderer, zoomSnap: 0.5 }).setView([31.82, 117.27], 13);
    this.svg = L.svg({ padding: 0.3 }); // for markers the tests and styles address as elements
    L.control.scale({ imperial: false, position: "bottomleft" }).addTo(this.map);
    this.legendEl = h("div", { class: "map-legend", "data-testid": "legend" });
    const legendEl = this.legendEl;
    const Legend = L.Control.extend({ onAdd: () => legendEl });
    new Legend({ position: "bottomright" }).addTo(this.map);
    this.pageLegend = [];
    this.layers = {};
    this.tileUrl = config.map.tile_url;
    if (config.map.tile_url) {
      this.tiles = L.tileLayer(config.map.tile_url, {
        maxZoom: 19, attribution: config.map.tile_attribution || "", opacity: 0.8,
      }).addTo(this.map);
    }
    for (const name of ["roads", "sites", "routes", "ledger", "track", "trucks"]) {
      this.layers[name] = L.layerGroup().addTo(this.map);
    }
    this.map.attributionControl.setPrefix("Leaflet");
    this.map.zoomControl.remove();
    this.labelControls();
    this.baseFor = null;
    this.sites = new Map();
  }

  // The zoom buttons and the layer switch in the current language (again after a switch).
  labelControls() {
    if (this.zoom) this.zoom.remove();
    if (this.control) this.control.remove();
    this.zoom = L.control.zoom({ zoomInTitle: t("map.zoom_in"), zoomOutTitle: t("map.zoom_out") }).addTo(this.map);
    const overlays = {};
    if (this.tiles) overlays[t("layer.tiles")] = this.tiles;
    for (const [name, layer] of Object.entries(this.layers)) overlays[t(`layer.${name}`)] = layer;
    this.control = L.control.layers(null, overlays, { collapsed: true }).addTo(this.map);
    const toggle = this.control.getContainer().querySelector(".leaflet-control-layers-toggle");
    toggle.title = t("layer.control");
    toggle.setAttribute("aria-label", t("layer.control"));
    this.renderLegend();
  }

  ll(lat, lon) {
    return this.gcj ? wgs84ToGcj02(lat, lon) : [lat, lon];
  }

  geoJSON(data, options) {
    return L.geoJSON(data, {
      ...options,
      coordsToLatLng: (c) => L.latLng(...this.ll(c[1], c[0])),
    });
  }

  async loadBase(districtId) {
    if (this.baseFor === districtId) return;
    this.baseFor = districtId;
    const params = qs({ district_id: districtId });
    const [roads, sites] = await Promise.all([
      api(`/map/roads${params}`), api(`/map/sites${params}`),
    ]);
    this.layers.roads.clearLayers();
    this.layers.sites.clearLayers();
    this.sites.clear();
    this.renderLegend();
    const roadLayer = this.geoJSON(roads, {
      interactive: false,
      style: (f) => ROAD_STYLE[f.properties.road_class] || ROAD_STYLE.local,
    }).addTo(this.layers.roads);
    for (const f of sites.features) {
      const p = f.properties;
      const [lon, lat] = f.geometry.coordinates;
      this.sites.set(`${p.kind}:${p.id}`, { ...p, lat, lon });
      const style = p.kind === "point"
        ? { radius: 4, color: "#fff", weight: 1, fillColor: STREAM_COLOUR[p.stream] || "#555", fillOpacity: 0.9 }
        : { radius: p.kind === "station" ? 9 : 8, color: "#1d2630", weight: 2,
            fillColor: p.kind === "station" ? "#f4d03f" : "#fdfefe", fillOpacity: 1 };
      L.circleMarker(this.ll(lat, lon), { ...style })
        .bindTooltip(textOf(`${t(`site.${p.kind}`)} ${p.id} ${p.name}`))
        .addTo(this.layers.sites);
    }
    const bounds = roadLayer.getBounds();
    if (bounds.isValid()) this.map.fitBounds(bounds, { padding: [20, 20], maxZoom: 16 });
    else if (sites.features.length) {
      this.map.fitBounds(this.geoJSON(sites).getBounds(), { padding: [20, 20], maxZoom: 16 });
    }
  }

  clear(...names) {
    for (const name of names) this.layers[name].clearLayers();
  }

  // The legend: the sites and streams always, then what the page draws
  // ([colour, label, {line: true}] entries).
  setLegend(entries = []) {
    this.pageLegend = entries;
    this.renderLegend();
  }

  renderLegend() {
    const dot = (colour, label, opts = {}) => h("div", { class: "legend-row" },
      h("span", { class: `legend-mark${opts.line ? " line" : ""}${opts.dashed ? " dashed" : ""}`, style: opts.line ? { borderColor: colour } : { background: colour } }),
      label);
    clear(this.legendEl,
      h("b", {}, t("legend.title")),
      dot("#fdfefe", t("legend.depot")), dot("#f4d03f", t("legend.station")),
      Object.entries(STREAM_COLOUR).map(([stream, colour]) => dot(colour, `${t("site.point")} · ${t(`stream.${stream}`)}`)),
      this.pageLegend.map(([colour, label, opts]) => dot(colour, label, opts)));
  }

  fitTo(bounds) {
    if (bounds && bounds.isValid()) this.map.fitBounds(bounds, { padding: [30, 30], maxZoom: 17 });
  }

  site(kind, id) {
    return this.sites.get(`${kind}:${id}`);
  }

  invalidate() {
    setTimeout(() => this.map.invalidateSize(), 0);
  }
}
