// 监管: today's clearance ledger on the map, alerts and cases (交办 → 反馈 → 销号), and the
// daily report with 日清率 by district and by day.
import {
  ApiError, addDays, api, can, clear, closeModal, fmtDateTime, fmtPct, h, openModal, qs, showError, textOf, toast,
} from "./core.js";
import { t } from "./i18n.js";
import { LEDGER_COLOUR } from "./map.js";

const L = window.L;
const LEDGER = ["cleared", "partial", "missed", "unverifiable", "pending"];
const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 15000;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function barChart(rows, { label, value, title }) {
  const width = 360;
  const barH = 18;
  const gap = 6;
  const left = 86;
  const height = Math.max(rows.length, 1) * (barH + gap) + 8;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  rows.forEach((row, i) => {
    const y = 4 + i * (barH + gap);
    const v = value(row);
    const w = v === null ? 0 : Math.max(1, (width - left - 50) * v);
    const colour = v === null ? "#aab2bd" : v >= 0.99 ? "#1e8449" : v >= 0.95 ? "#d68910" : "#c0392b";
    chart.append(
      svg("text", { x: 0, y: y + 13 }, label(row)),
      svg("rect", { x: left, y, width: w, height: barH, fill: colour, rx: 2 }),
      svg("text", { x: left + w + 4, y: y + 13 }, fmtPct(v)),
    );
  });
  return h("div", { class: "chart" }, chart);
}

export class SupervisePage {
  constructor() {
    this.tab = "cases";
    this.caseState = "active";
    this.timer = 0;
  }

  async mount(ctx) {
    this.ctx = ctx;
    this.el = {
      ledger: h("div", { "data-testid": "ledger" }),
      list: h("div", { "data-testid": "sup-list" }),
      tabs: h("div", { class: "subtabs" }),
      report: h("div", { "data-testid": "report" }),
    };
    clear(ctx.panel,
      h("h2", {}, t("sup.ledger"),
        h("button", { class: "link", "data-testid": "sup-refresh", onclick: () => this.refresh(this.ctx).catch(showError) }, "⟳")),
      this.el.ledger, this.el.tabs, this.el.list,
      h("h2", {}, t("sup.report"),
        h("button", { class: "link", "data-testid": "report-csv", onclick: () => this.downloadCsv().catch(showError) }, t("report.csv"))),
      this.el.report);
    await this.refresh(ctx);
  }

  unmount() {
    clearTimeout(this.timer);
    this.timer = 0;
  }

  async refresh(ctx) {
    this.ctx = ctx;
    clearTimeout(this.timer);
    await Promise.all([this.loadLedger(), this.loadList(), this.loadReport()]);
    this.timer = setTimeout(() => this.refresh(this.ctx).catch(showError), REFRESH_MS);
  }

  async loadLedger() {
    const { map, district, date } = this.ctx;
    const ledger = await api(`/ledger${qs({ service_date: date, district_id: district })}`);
    map.clear("ledger");
    const counts = Object.fromEntries(LEDGER.map((s) => [s, 0]));
    for (const e of ledger.entries) {
      counts[e.status] += 1;
      if (e.lat === null || e.lon === null) continue;
      L.circleMarker(map.ll(e.lat, e.lon), {
        radius: e.status === "missed" ? 7 : 5, color: "#fff", weight: 1,
        fillColor: LEDGER_COLOUR[e.status], fillOpacity: 0.95, renderer: map.renderer,
      }).bindTooltip(textOf(`${e.point_id} ${e.point_name || ""} · ${t(`ledger.${e.status}`)}${e.reason ? ` (${e.reason})` : ""}`))
        .addTo(map.layers.ledger);
    }
    const due = ledger.entries.length;
    clear(this.el.ledger,
      h("div", { class: "stats" }, LEDGER.filter((s) => counts[s] || s === "cleared" || s === "missed").map((s) => h("div", { class: "stat" },
        h("b", { style: { color: LEDGER_COLOUR[s] }, "data-testid": `ledger-${s}` }, counts[s]),
        h("small", {}, t(`ledger.${s}`))))),
      h("p", { class: "muted" }, `${t("report.due")} ${due}`));
  }

  async loadList() {
    const tabs = [["cases", t("sup.cases")], ["alerts", t("sup.alerts")]];
    clear(this.el.tabs,
      tabs.map(([key, label]) => h("button", {
        class: this.tab === key ? "active" : "", "data-testid": `tab-${key}`,
        onclick: () => { this.tab = key; this.loadList().catch(showError); },
      }, label)),
      this.tab === "cases" ? h("select", {
        "data-testid": "case-filter",
        onchange: (e) => { this.caseState = e.target.value; this.loadList().catch(showError); },
      }, h("option", { value: "active", selected: this.caseState === "active" }, t("sup.active")),
      h("option", { value: "", selected: this.caseState === "" }, t("sup.all"))) : null);
    const { district, date } = this.ctx;
    if (this.tab === "alerts") {
      const alerts = await api(`/alerts${qs({ service_date: date, district_id: district, limit: 500 })}`);
      clear(this.el.list, alerts.length ? h("table", { class: "list" }, alerts.map((a) => h("tr", {
        class: a.case_id ? "clickable" : "", dataset: { alertId: a.alert_id },
        onclick: () => a.case_id && this.openCase(a.case_id).catch(showError),
      },
      h("td", {}, h("span", { class: `chip ${a.severity}` }, t(`severity.${a.severity}`))),
      h("td", {}, t(`alert.${a.kind}`)),
      h("td", {}, a.point_id || a.truck_id || a.subject),
      h("td", { class: "muted" }, fmtDateTime(a.raised_at))))) : h("p", { class: "muted" }, t("common.none")));
      return;
    }
    const cases = await api(`/cases${qs({ service_date: date, district_id: district, state: this.caseState, limit: 500 })}`);
    clear(this.el.list, cases.length ? h("table", { class: "list" }, cases.map((c) => h("tr", {
      class: "clickable", dataset: { caseId: c.case_id, state: c.state, subject: c.subject },
      onclick: () => this.openCase(c.case_id).catch(showError),
    },
    h("td", {}, h("span", { class: `chip ${c.severity}` }, t(`severity.${c.severity}`))),
    h("td", {}, c.title),
    h("td", {}, h("span", { class: `chip ${c.state}` }, t(`case.${c.state}`))),
    h("td", { class: `due ${c.overdue ? "error" : "muted"}` }, c.overdue ? t("case.overdue") : fmtDateTime(c.due_at))))) : h("p", { class: "muted" }, t("common.none")));
  }

  async openCase(caseId) {
    const c = await api(`/cases/${caseId}`);
    const note = h("textarea", { "data-testid": "case-note", placeholder: t("case.note") });
    const assignee = h("input", { "data-testid": "case-assignee", placeholder: t("case.assignee"), value: c.assignee || "" });
    const act = async (action, body) => {
      try {
        await api(`/cases/${caseId}/${action}`, { method: "POST", body });
        toast(t("case.done"));
        await this.openCase(caseId);
        await Promise.all([this.loadList(), this.loadLedger()]);
      } catch (err) {
        if (err instanceof ApiError && err.status === 422 && action === "close") toast(t("case.note_required"), { error: true });
        else showError(err);
      }
    };
    const actions = [];
    if (c.state !== "closed") {
      if (can("admin", "supervisor")) {
        actions.push(h("div", { class: "row" }, assignee,
          h("button", { "data-testid": "case-assign", onclick: () => act("assign", { assignee: assignee.value.trim(), note: note.value.trim() || null }) }, t("case.assign"))));
      }
      if (c.state !== "open" && can("admin", "supervisor", "dispatcher")) {
        actions.push(h("button", { class: "secondary", "data-testid": "case-feedback", onclick: () => act("feedback", { note: note.value.trim() }) }, t("case.feedback_action")));
      }
      if (can("admin", "supervisor")) {
        actions.push(h("button", { class: "danger", "data-testid": "case-close", onclick: () => act("close", { note: note.value.trim() }) }, t("case.close")));
      }
    }
    openModal(h("div", { "data-testid": "case-detail", dataset: { state: c.state } },
      h("h3", {}, `#${c.case_id} ${c.title}`),
      h("div", { class: "row" },
        h("span", { class: `chip ${c.severity}` }, t(`severity.${c.severity}`)),
        h("span", { class: `chip ${c.state}`, "data-testid": "case-state" }, t(`case.${c.state}`)),
        h("span", { class: "muted" }, `${t("case.due")} ${fmtDateTime(c.due_at)}`),
        c.overdue ? h("span", { class: "error" }, t("case.overdue")) : null,
        c.assignee ? h("span", {}, `→ ${c.assignee}`) : null),
      h("h4", {}, t("case.alerts")),
      h("ul", {}, c.alerts.map((a) => h("li", {}, `${t(`alert.${a.kind}`)} · ${fmtDateTime(a.condition_at)} · ${a.message}`))),
      h("h4", {}, t("case.timeline")),
      h("ul", { class: "timeline" }, c.events.map((e) => h("li", {},
        `${fmtDateTime(e.at)} · ${e.actor} · ${t(`action.${e.action}`)}`,
        e.from_state !== e.to_state ? ` (${t(`case.${e.from_state}`)} → ${t(`case.${e.to_state}`)})` : "",
        e.assignee ? ` · ${e.assignee}` : "", e.note ? h("div", { class: "muted" }, e.note) : null))),
      c.state !== "closed" ? [note, h("div", { class: "row" }, actions)] : h("p", { class: "muted" }, c.close_note || ""),
      h("div", { class: "row" }, h("button", { class: "secondary", "data-testid": "case-dismiss", onclick: closeModal }, t("common.close")))));
  }

  async loadReport() {
    const { district, date } = this.ctx;
    const [byDistrict, byDay] = await Promise.all([
      api(`/reports/clearance${qs({ date_from: date, by: "district" })}`),
      api(`/reports/clearance${qs({ date_from: addDays(date, -6), date_to: date, district_id: district })}`),
    ]);
    const days = [];
    for (let i = -6; i <= 0; i++) {
      const day = addDays(date, i);
      days.push(byDay.find((r) => r.service_date === day) || { service_date: day, clearance_rate: null });
    }
    clear(this.el.report,
      h("h4", {}, t("report.by_district")),
      byDistrict.length
        ? barChart(byDistrict, { label: (r) => r.group, value: (r) => r.clearance_rate, title: t("report.by_district") })
        : h("p", { class: "muted" }, t("common.none")),
      h("h4", {}, t("report.by_day")),
      barChart(days, { label: (r) => r.service_date.slice(5), value: (r) => r.clearance_rate, title: t("report.by_day") }));
  }

  async downloadCsv() {
    const { district, date } = this.ctx;
    const response = await api(`/reports/clearance.csv${qs({ date_from: addDays(date, -6), date_to: date, district_id: district })}`, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    const a = h("a", { href: url, download: `clearday-clearance-${date}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
}
