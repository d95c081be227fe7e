// 监管: the day's clearance ledger on the map, the missed points with their reasons
// (漏收明细, exported as CSV or PDF), alerts and cases with filters and search, and a case's
// workflow (交办 → 反馈 → 销号) with the assignee picked from the users, its record as PDF.
import {
  ApiError, api, can, clear, closeModal, download, fmtDateTime, fmtTime, h, openModal, platesOf, qs, showError,
  table, textOf, toast,
} from "./core.js";
import { currentLang, t } from "./i18n.js";
import { LEDGER_COLOUR } from "./map.js";
import { confidenceText, lastEvidence, whyText } from "./verdicts.js";

const L = window.L;
const LEDGER = ["cleared", "partial", "missed", "unverifiable", "pending"];
const KINDS = ["missed", "drive_by", "not_cleared_by_deadline", "not_unloaded", "offline", "stationary"];
const STREAMS = ["other", "kitchen", "recyclable", "hazardous", "mixed"];
const CASE_STATES = ["open", "assigned", "feedback", "closed"];
const REFRESH_MS = 15000;

export class SupervisePage {
  constructor() {
    this.tab = "cases";
    this.filters = { kind: "", severity: "", truck: "", stream: "", state: "active", q: "" };
    this.timer = 0;
    this.markers = new Map();
    this.data = { ledger: [], alerts: [], cases: [], plates: new Map() };
  }

  async mount(ctx) {
    this.ctx = ctx;
    this.el = {
      ledger: h("div", { "data-testid": "ledger" }),
      missed: h("div", { "data-testid": "missed" }),
      filters: h("div", { class: "filters", "data-testid": "sup-filters" }),
      tabs: h("div", { class: "subtabs" }),
      list: h("div", { "data-testid": "sup-list" }),
    };
    clear(ctx.panel,
      h("h2", {}, t("sup.ledger"),
        h("button", { class: "link", "data-testid": "sup-refresh", title: t("common.show"), onclick: () => this.refresh(this.ctx).catch(showError) }, "⟳")),
      this.el.ledger,
      h("h2", {}, t("missed.title"),
        h("span", {},
          h("button", { class: "link", "data-testid": "missed-csv", onclick: () => this.exportMissed("csv").catch(showError) }, t("common.export")),
          h("button", { class: "link", "data-testid": "missed-pdf", onclick: () => this.exportMissed("pdf").catch(showError) }, t("common.export_pdf")))),
      this.el.missed,
      this.el.tabs, this.el.filters, this.el.list);
    ctx.map.setLegend(LEDGER.map((s) => [LEDGER_COLOUR[s], t(`ledger.${s}`)]));
    await this.refresh(ctx);
  }

  unmount() {
    clearTimeout(this.timer);
    this.timer = 0;
  }

  async refresh(ctx) {
    this.ctx = ctx;
    clearTimeout(this.timer);
    // The timer's refresh and one asked for by a change of day can overlap: only the
    // newest may draw.
    const asked = (this.asked = (this.asked || 0) + 1);
    const { district, date } = ctx;
    const [ledger, alerts, cases, plates] = await Promise.all([
      api(`/ledger${qs({ service_date: date, district_id: district })}`),
      api(`/alerts${qs({ service_date: date, district_id: district, limit: 1000 })}`),
      api(`/cases${qs({ service_date: date, district_id: district, limit: 1000 })}`),
      platesOf(district),
    ]);
    if (asked !== this.asked) return;
    this.data = { ledger: ledger.entries, alerts, cases, plates };
    this.entryByPoint = new Map(ledger.entries.map((e) => [e.point_id, e]));
    this.renderLedger();
    this.renderMissed();
    this.renderList();
    this.timer = setTimeout(() => this.refresh(this.ctx).catch(showError), REFRESH_MS);
  }

  plate(truckId) {
    return truckId ? this.data.plates.get(truckId) || truckId : "";
  }

  pointLabel(pointId) {
    const e = this.entryByPoint.get(pointId);
    return e ? `${e.point_id} ${e.point_name || ""}`.trim() : pointId || "";
  }

  renderLedger() {
    const { map } = this.ctx;
    map.clear("ledger");
    this.markers.clear();
    const counts = Object.fromEntries(LEDGER.map((s) => [s, 0]));
    for (const e of this.data.ledger) {
      counts[e.status] += 1;
      if (e.lat === null || e.lon === null) continue;
      const marker = L.circleMarker(map.ll(e.lat, e.lon), {
        radius: e.status === "missed" ? 7 : 5, color: "#fff", weight: 1,
        fillColor: LEDGER_COLOUR[e.status], fillOpacity: 0.95,
      }).bindTooltip(textOf(`${e.point_id} ${e.point_name || ""} · ${t(`ledger.${e.status}`)}`
        + (e.status === "cleared" && e.delivery !== "not_delivered" ? "" : ` · ${whyText(e)}`)))
        .addTo(map.layers.ledger);
      this.markers.set(e.point_id, marker);
    }
    clear(this.el.ledger,
      h("div", { class: "stats" }, LEDGER.filter((s) => counts[s] || s === "cleared" || s === "missed").map((s) => h("div", { class: "stat" },
        h("b", { style: { color: LEDGER_COLOUR[s] }, "data-testid": `ledger-${s}` }, counts[s]),
        h("small", {}, t(`ledger.${s}`))))),
      h("p", { class: "muted" }, `${t("report.due")} ${this.data.ledger.length}`));
  }

  missedEntries() {
    return this.data.ledger.filter((e) => ["partial", "missed", "unverifiable"].includes(e.status)
      || (e.status === "cleared" && e.delivery === "not_delivered"));
  }

  renderMissed() {
    const rows = this.missedEntries();
    const caseOf = new Map(this.data.cases.map((c) => [c.point_id, c]));
    if (!rows.length) {
      clear(this.el.missed, h("p", { class: "muted" }, t("missed.none")));
      return;
    }
    clear(this.el.missed, table(rows, [
      [t("col.point"), (e) => this.pointLabel(e.point_id)],
      [t("col.reason"), (e) => h("span", { "data-testid": "missed-reason" }, whyText(e))],
      [t("col.truck"), (e) => this.plate(e.planned_truck_id || e.cleared_by_truck_id) || "—"],
      [t("col.stream"), (e) => t(`stream.${e.stream}`)],
      [t("col.planned"), (e) => fmtTime(e.planned_arrival_at || e.window_end_at)],
      [t("col.evidence"), (e) => lastEvidence(e).text],
      [t("col.confidence"), (e) => confidenceText(e)],
      [t("col.case"), (e) => {
        const c = caseOf.get(e.point_id);
        return c ? h("button", {
          class: `chip ${c.state}`, "data-testid": "missed-case",
          onclick: (ev) => { ev.stopPropagation(); this.openCase(c.case_id).catch(showError); },
        }, t(`case.${c.state}`)) : "—";
      }],
      ["", (e) => {
        const truck = e.planned_truck_id || e.cleared_by_truck_id || lastEvidence(e).truckId;
        return truck ? h("a", {
          href: `#/playback?truck=${encodeURIComponent(truck)}&point=${encodeURIComponent(e.point_id)}`,
          "data-testid": "missed-playback", title: t("case.replay"), onclick: (ev) => ev.stopPropagation(),
        }, t("live.playback")) : "";
      }],
    ], (e) => ({
      class: "clickable", dataset: { pointId: e.point_id, status: e.status },
      onclick: () => this.zoomTo(e.point_id),
    })));
  }

  zoomTo(pointId) {
    const e = this.entryByPoint.get(pointId);
    if (!e || e.lat === null) return;
    const { map } = this.ctx;
    map.map.setView(map.ll(e.lat, e.lon), 17);
    this.markers.get(pointId)?.openTooltip();
    for (const row of this.el.missed.querySelectorAll("tr")) row.classList.toggle("selected", row.dataset.pointId === pointId);
  }

  async exportMissed(extension) {
    const { district, date } = this.ctx;
    await download(`/reports/missed.${extension}${qs({ date_from: date, district_id: district, lang: currentLang() })}`,
      `clearday-missed-${date}.${extension}`);
  }

  // --- alerts and cases: filters, search, tables ---

  truckOfPoint(pointId) {
    const e = this.entryByPoint.get(pointId);
    return e ? e.planned_truck_id || e.cleared_by_truck_id : null;
  }

  streamOfPoint(pointId) {
    return this.entryByPoint.get(pointId)?.stream || this.ctx.map.site("point", pointId)?.stream || null;
  }

  matches(item, kinds) {
    const f = this.filters;
    const truck = item.truck_id || this.truckOfPoint(item.point_id);
    if (f.kind && !kinds.includes(f.kind)) return false;
    if (f.severity && item.severity !== f.severity) return false;
    if (f.truck && truck !== f.truck) return false;
    if (f.stream && this.streamOfPoint(item.point_id) !== f.stream) return false;
    if (f.q) {
      const text = [item.title, item.subject, item.point_id, this.pointLabel(item.point_id), this.plate(truck),
        item.assignee, item.message].filter(Boolean).join(" ").toLowerCase();
      if (!text.includes(f.q.toLowerCase())) return false;
    }
    return true;
  }

  renderFilters() {
    const select = (name, options, label) => h("label", { class: "inline" }, label,
      h("select", {
        "data-testid": `filter-${name}`,
        onchange: (e) => { this.filters[name] = e.target.value; this.renderList(); },
      }, options.map(([value, text]) => h("option", { value, selected: this.filters[name] === value }, text))));
    const all = ["", t("common.all")];
    const trucks = [...this.data.plates.entries()].sort((a, b) => a[1].localeCompare(b[1]));
    const search = h("input", {
      type: "search", "data-testid": "filter-q", placeholder: t("common.search"), value: this.filters.q,
      oninput: (e) => { this.filters.q = e.target.value.trim(); this.renderList(); },
    });
    clear(this.el.filters,
      select("kind", [all, ...KINDS.map((k) => [k, t(`alert.${k}`)])], t("filter.kind")),
      select("severity", [all, ["high", t("severity.high")], ["normal", t("severity.normal")]], t("filter.severity")),
      select("truck", [all, ...trucks], t("filter.truck")),
      select("stream", [all, ...STREAMS.map((s) => [s, t(`stream.${s}`)])], t("filter.stream")),
      this.tab === "cases"
        ? select("state", [["active", t("sup.active")], all, ...CASE_STATES.map((s) => [s, t(`case.${s}`)])], t("filter.state"))
        : null,
      search);
    // Keep typing in the search box across re-renders.
    if (this.searchFocused) { search.focus(); search.setSelectionRange(search.value.length, search.value.length); }
    search.addEventListener("focus", () => { this.searchFocused = true; });
    search.addEventListener("blur", () => { this.searchFocused = false; });
  }

  renderList() {
    const tabs = [["cases", t("sup.cases")], ["alerts", t("sup.alerts")]];
    clear(this.el.tabs, tabs.map(([key, label]) => h("button", {
      class: this.tab === key ? "active" : "", "data-testid": `tab-${key}`,
      onclick: () => { this.tab = key; this.renderList(); },
    }, label)));
    this.renderFilters();
    const caseState = new Map(this.data.cases.map((c) => [c.case_id, c.state]));
    if (this.tab === "alerts") {
      const alerts = this.data.alerts.filter((a) => this.matches(a, [a.kind]));
      clear(this.el.list, alerts.length ? table(alerts, [
        [t("col.severity"), (a) => h("span", { class: `chip ${a.severity}` }, t(`severity.${a.severity}`))],
        [t("col.kind"), (a) => t(`alert.${a.kind}`)],
        [t("col.subject"), (a) => (a.point_id ? this.pointLabel(a.point_id) : this.plate(a.truck_id) || a.subject)],
        [t("col.truck"), (a) => this.plate(a.truck_id || this.truckOfPoint(a.point_id)) || "—"],
        [t("col.time"), (a) => fmtTime(a.condition_at)],
        [t("col.state"), (a) => (a.case_id && caseState.has(a.case_id) ? h("span", { class: `chip ${caseState.get(a.case_id)}` }, t(`case.${caseState.get(a.case_id)}`)) : "—")],
      ], (a) => ({
        class: a.case_id ? "clickable" : "", dataset: { alertId: a.alert_id, kind: a.kind },
        onclick: () => a.case_id && this.openCase(a.case_id).catch(showError),
      })) : h("p", { class: "muted" }, t("common.none")));
      return;
    }
    const kindsOf = new Map();
    for (const a of this.data.alerts) {
      if (!a.case_id) continue;
      if (!kindsOf.has(a.case_id)) kindsOf.set(a.case_id, []);
      kindsOf.get(a.case_id).push(a.kind);
    }
    const state = this.filters.state;
    const cases = this.data.cases.filter((c) => (state === "active" ? c.state !== "closed" : !state || c.state === state)
      && this.matches(c, kindsOf.get(c.case_id) || []));
    clear(this.el.list, cases.length ? table(cases, [
      [t("col.severity"), (c) => h("span", { class: `chip ${c.severity}` }, t(`severity.${c.severity}`))],
      [t("col.kind"), (c) => [...new Set(kindsOf.get(c.case_id) || [])].map((k) => t(`alert.${k}`)).join(t("common.list_sep")) || "—"],
      [t("col.subject"), (c) => (c.point_id ? this.pointLabel(c.point_id) : this.plate(c.truck_id) || c.subject)],
      [t("col.truck"), (c) => this.plate(c.truck_id || this.truckOfPoint(c.point_id)) || "—"],
      [t("col.state"), (c) => h("span", { class: `chip ${c.state}` }, t(`case.${c.state}`))],
      [t("col.due"), (c) => h("span", { class: c.overdue ? "error" : "muted" }, c.overdue ? t("case.overdue") : fmtDateTime(c.due_at))],
    ], (c) => ({
      class: "clickable", dataset: { caseId: c.case_id, state: c.state, subject: c.subject },
      onclick: () => this.openCase(c.case_id).catch(showError),
    })) : h("p", { class: "muted" }, t("common.none")));
  }

  async assignees() {
    if (!this.assigneeList) {
      this.assigneeList = await api(`/assignees${qs({ district_id: this.ctx.district })}`).catch(() => []);
    }
    return this.assigneeList;
  }

  async openCase(caseId) {
    const [c, people] = await Promise.all([api(`/cases/${caseId}`), this.assignees()]);
    const note = h("textarea", { "data-testid": "case-note", placeholder: t("case.note") });
    const listId = `assignees-${caseId}`;
    const assignee = h("input", {
      "data-testid": "case-assignee", list: listId, placeholder: t("case.pick_assignee"), value: c.assignee || "",
    });
    const options = h("datalist", { id: listId, "data-testid": "assignee-options" },
      people.map((p) => h("option", { value: p.display_name || p.username }, `${p.username} · ${t(`role.${p.role}`)}`)));
    const act = async (action, body) => {
      try {
        await api(`/cases/${caseId}/${action}`, { method: "POST", body });
        toast(t("case.done"));
        await this.openCase(caseId);
        await this.refresh(this.ctx);
      } catch (err) {
        if (err instanceof ApiError && err.status === 422 && action === "close") toast(t("case.note_required"), { error: true });
        else showError(err);
      }
    };
    const actions = [];
    if (c.state !== "closed") {
      if (can("admin", "supervisor")) {
        actions.push(h("div", { class: "row" }, assignee, options,
          h("button", { "data-testid": "case-assign", onclick: () => act("assign", { assignee: assignee.value.trim(), note: note.value.trim() || null }) }, t("case.assign"))));
      }
      if (c.state !== "open" && can("admin", "supervisor", "dispatcher")) {
        actions.push(h("button", { class: "secondary", "data-testid": "case-feedback", onclick: () => act("feedback", { note: note.value.trim() }) }, t("case.feedback_action")));
      }
      if (can("admin", "supervisor")) {
        actions.push(h("button", { class: "danger", "data-testid": "case-close", onclick: () => act("close", { note: note.value.trim() }) }, t("case.close")));
      }
    }
    const truck = c.truck_id || this.truckOfPoint(c.point_id);
    const actor = (name) => (name === "system" ? t("actor.system") : name);
    openModal(h("div", { "data-testid": "case-detail", dataset: { state: c.state } },
      h("h3", {}, `#${c.case_id} `, c.point_id ? this.pointLabel(c.point_id) : this.plate(c.truck_id) || c.subject),
      h("div", { class: "row" },
        h("span", { class: `chip ${c.severity}` }, t(`severity.${c.severity}`)),
        h("span", { class: `chip ${c.state}`, "data-testid": "case-state" }, t(`case.${c.state}`)),
        h("span", { class: "muted" }, `${t("case.due")} ${fmtDateTime(c.due_at)}`),
        c.overdue ? h("span", { class: "error" }, t("case.overdue")) : null,
        c.assignee ? h("span", {}, `→ ${c.assignee}`) : null,
        truck ? h("span", {}, `${t("col.truck")} ${this.plate(truck)}`) : null),
      h("div", { class: "row" },
        c.point_id ? h("button", { class: "link", "data-testid": "case-zoom", onclick: () => { closeModal(); this.zoomTo(c.point_id); } }, t("case.zoom")) : null,
        truck ? h("a", { href: `#/playback?truck=${encodeURIComponent(truck)}${c.point_id ? `&point=${encodeURIComponent(c.point_id)}` : ""}`, "data-testid": "case-playback", onclick: closeModal }, t("case.replay")) : null,
        h("button", {
          class: "link", "data-testid": "case-pdf",
          onclick: () => download(`/cases/${c.case_id}.pdf${qs({ lang: currentLang() })}`, `clearday-case-${c.case_id}.pdf`).catch(showError),
        }, t("case.pdf"))),
      h("h4", {}, t("case.alerts")),
      h("ul", {}, c.alerts.map((a) => h("li", {},
        `${t(`alert.${a.kind}`)} · ${fmtDateTime(a.condition_at)}`,
        // The alert's own text is written in Chinese by the server.
        currentLang() === "zh" ? ` · ${a.message}` : ""))),
      h("h4", {}, t("case.timeline")),
      h("ul", { class: "timeline", "data-testid": "case-timeline" }, c.events.map((e) => h("li", {},
        `${fmtDateTime(e.at)} · ${actor(e.actor)} · ${t(`action.${e.action}`)}`,
        e.from_state !== e.to_state ? ` (${t(`case.${e.from_state}`)} → ${t(`case.${e.to_state}`)})` : "",
        e.assignee ? ` · ${e.assignee}` : "", e.note ? h("div", { class: "muted" }, e.note) : null))),
      c.state !== "closed" ? [note, h("div", { class: "row" }, actions)] : h("p", { class: "muted" }, c.close_note || ""),
      h("div", { class: "row" }, h("button", { class: "secondary", "data-testid": "case-dismiss", onclick: closeModal }, t("common.close")))));
  }
}
