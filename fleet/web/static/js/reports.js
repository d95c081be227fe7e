// 报表: 日报 (a date range), 周小结 (the ISO week) and 月通报 (the month) of a date — the
// 日清率 trend, 按期结案率, breakdowns by truck and by waste stream, alerts by kind and
// the points most often not cleared; printable, and exported as CSV or PDF.
import { addDays, api, clear, download, fmtPct, h, platesOf, qs, showError, table } from "./core.js";
import { currentLang, t } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const rateColour = (v) => (v === null ? "#aab2bd" : v >= 0.99 ? "#1e8449" : v >= 0.95 ? "#d68910" : "#c0392b");

// One column per day, its height the day's 日清率.
function trendChart(days, title) {
  const barW = Math.max(8, Math.min(40, Math.floor(640 / Math.max(days.length, 1)) - 4));
  const width = Math.max(days.length * (barW + 4) + 40, 200);
  const height = 170;
  const base = 140;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, "data-testid": "rep-trend-chart" });
  chart.append(svg("line", { x1: 30, y1: base, x2: width, y2: base, stroke: "#d9dee4" }),
    svg("text", { x: 0, y: 14 }, "100%"), svg("text", { x: 0, y: base }, "0%"));
  days.forEach((d, i) => {
    const x = 34 + i * (barW + 4);
    const v = d.clearance_rate;
    const barH = v === null ? 0 : Math.max(1, v * (base - 10));
    chart.append(svg("rect", { x, y: base - barH, width: barW, height: barH, fill: rateColour(v), rx: 2 },
      svg("title", {}, `${d.service_date} ${fmtPct(v)}`)));
    if (days.length <= 16 || i % Math.ceil(days.length / 16) === 0) {
      chart.append(svg("text", { x, y: base + 14 }, d.service_date.slice(5)));
    }
  });
  return h("div", { class: "chart" }, chart);
}

// Sum per-day rows of one group into one row per group.
function totals(rows) {
  const by = new Map();
  for (const r of rows) {
    const acc = by.get(r.group) || { group: r.group, due: 0, cleared_and_delivered: 0, missed: 0, partial: 0, unverifiable: 0 };
    for (const k of ["due", "cleared_and_delivered", "missed", "partial", "unverifiable"]) acc[k] += r[k];
    by.set(r.group, acc);
  }
  return [...by.values()].map((r) => ({ ...r, clearance_rate: r.due ? r.cleared_and_delivered / r.due : null }))
    .sort((a, b) => (a.clearance_rate ?? 2) - (b.clearance_rate ?? 2));
}

function days(from, to) {
  const out = [];
  for (let d = from; d <= to && out.length < 400; d = addDays(d, 1)) out.push(d);
  return out;
}

export class ReportsPage {
  constructor() {
    this.kind = "daily";
  }

  async mount(ctx) {
    this.ctx = ctx;
    this.from = addDays(ctx.date, -6);
    this.to = ctx.date;
    this.el = { form: h("div", { class: "no-print" }), body: h("div", { "data-testid": "report" }) };
    clear(ctx.panel, h("div", { class: "report-page" }, h("h2", {}, t("rep.title")), this.el.form, this.el.body));
    await this.refresh(ctx);
  }

  unmount() {}

  async refresh(ctx) {
    if (ctx.date !== this.ctx.date) {
      this.from = addDays(ctx.date, -6);
      this.to = ctx.date;
    }
    this.ctx = ctx;
    this.renderForm();
    await this.load();
  }

  renderForm() {
    const kinds = [["daily", t("rep.daily")], ["week", t("rep.weekly")], ["month", t("rep.monthly")]];
    const from = h("input", { type: "date", value: this.from, "data-testid": "rep-from" });
    const to = h("input", { type: "date", value: this.to, "data-testid": "rep-to" });
    const anchor = h("input", { type: "date", value: this.to, "data-testid": "rep-anchor" });
    const show = () => {
      if (this.kind === "daily") { this.from = from.value || this.from; this.to = to.value || this.to; }
      else this.to = anchor.value || this.to;
      this.load().catch((err) => clear(this.el.body, h("p", { class: "error" }, err.message)));
    };
    clear(this.el.form, h("div", { class: "row" },
      h("div", { class: "subtabs" }, kinds.map(([key, label]) => h("button", {
        class: this.kind === key ? "active" : "", "data-testid": `rep-kind-${key}`,
        onclick: () => { this.kind = key; this.renderForm(); show(); },
      }, label))),
      this.kind === "daily"
        ? h("label", { class: "inline" }, t("rep.range"), from, t("common.to"), to)
        : h("label", { class: "inline" }, t("rep.period"), anchor),
      h("button", { "data-testid": "rep-show", onclick: show }, t("rep.show")),
      h("button", { class: "secondary", "data-testid": "rep-print", onclick: () => window.print() }, t("common.print")),
      h("button", { class: "secondary", "data-testid": "rep-csv", onclick: () => this.export("csv").catch(showError) }, t("common.export")),
      h("button", { class: "secondary", "data-testid": "rep-pdf", onclick: () => this.export("pdf").catch(showError) }, t("common.export_pdf"))));
  }

  async load() {
    // Only the latest request draws: a slow answer to an earlier choice is dropped.
    const token = (this.token = (this.token || 0) + 1);
    const kind = this.kind;
    const { district } = this.ctx;
    let period = null;
    let from = this.from;
    let to = this.to;
    if (kind !== "daily") {
      period = await api(`/reports/period${qs({ period: kind, anchor: this.to, district_id: district })}`);
      from = period.date_from;
      to = period.date_to;
    }
    if (to < from) [from, to] = [to, from];
    const range = { date_from: from, date_to: to, district_id: district };
    const [daily, byTruck, byStream, closure, plates] = await Promise.all([
      api(`/reports/clearance${qs({ ...range, by: "district" })}`),
      api(`/reports/clearance${qs({ ...range, by: "truck" })}`),
      api(`/reports/clearance${qs({ ...range, by: "stream" })}`),
      api(`/reports/closure${qs(range)}`),
      platesOf(district),
    ]);
    if (token !== this.token) return;
    this.range = { from, to };
    const trend = days(from, to).map((d) => {
      const rows = daily.filter((r) => r.service_date === d);
      const due = rows.reduce((s, r) => s + r.due, 0);
      const ok = rows.reduce((s, r) => s + r.cleared_and_delivered, 0);
      return { service_date: d, due, clearance_rate: due ? ok / due : null };
    });
    const all = totals(daily.map((r) => ({ ...r, group: "all" })))[0];
    const close = closure[0];
    const title = { daily: t("rep.daily"), week: t("rep.weekly"), month: t("rep.monthly") }[kind];
    const groupTable = (rows, label, name) => (rows.length ? table(rows, [
      [label, (r) => name(r.group)],
      [t("col.due_count"), (r) => r.due],
      [t("col.cleared"), (r) => r.cleared_and_delivered],
      [t("col.missed"), (r) => r.missed + r.partial],
      [t("col.rate"), (r) => h("b", { style: { color: rateColour(r.clearance_rate) } }, fmtPct(r.clearance_rate))],
    ]) : h("p", { class: "muted" }, t("common.none")));
    clear(this.el.body,
      h("h3", { "data-testid": "rep-title" }, `${title} · ${from} ${t("common.to")} ${to}`),
      h("div", { class: "stats" },
        h("div", { class: "stat" }, h("b", { "data-testid": "rep-rate" }, fmtPct(all ? all.clearance_rate : null)), h("small", {}, t("report.rate"))),
        h("div", { class: "stat" }, h("b", {}, all ? all.due : 0), h("small", {}, t("col.due_count"))),
        h("div", { class: "stat" }, h("b", {}, all ? all.missed + all.partial : 0), h("small", {}, t("rep.missed_points"))),
        h("div", { class: "stat" }, h("b", { "data-testid": "rep-closure-rate" }, fmtPct(close ? close.on_time_rate : null)), h("small", {}, t("rep.closure")))),
      h("h4", {}, t("rep.trend")), trendChart(trend, t("rep.trend")),
      h("h4", {}, t("rep.closure")),
      closure.length ? table(closure, [
        [t("col.district"), (r) => r.district_id],
        [t("col.cases"), (r) => r.cases],
        [t("col.closed_on_time"), (r) => r.closed_on_time],
        [t("col.closed_late"), (r) => r.closed_late],
        [t("col.open_overdue"), (r) => r.open_overdue],
        [t("col.on_time_rate"), (r) => fmtPct(r.on_time_rate)],
      ], () => ({}), { class: "list", "data-testid": "rep-closure" }) : h("p", { class: "muted" }, t("common.none")),
      h("div", { class: "report-columns" },
        h("div", { "data-testid": "rep-by-truck" }, h("h4", {}, t("rep.by_truck")),
          groupTable(totals(byTruck), t("col.truck"), (g) => (g === "-" ? t("plan.unassigned") : plates.get(g) || g))),
        h("div", { "data-testid": "rep-by-stream" }, h("h4", {}, t("rep.by_stream")),
          groupTable(totals(byStream), t("col.stream"), (g) => t(`stream.${g}`)))),
      period ? [
        h("h4", {}, t("rep.alerts")),
        period.alerts.length ? table(period.alerts, [
          [t("col.district"), (r) => r.district_id], [t("col.kind"), (r) => t(`alert.${r.kind}`)], [t("col.count"), (r) => r.alerts],
        ], () => ({}), { class: "list", "data-testid": "rep-alerts" }) : h("p", { class: "muted" }, t("common.none")),
        h("h4", {}, t("rep.worst")),
        period.worst_points.length ? table(period.worst_points, [
          [t("col.point"), (r) => `${r.point_id} ${r.point_name}`], [t("col.days"), (r) => r.days_not_cleared],
        ], () => ({}), { class: "list", "data-testid": "rep-worst" }) : h("p", { class: "muted" }, t("common.none")),
      ] : null);
  }

  // The report on show as a file: CSV for Excel, PDF to print and file.
  export(extension) {
    const { district } = this.ctx;
    const name = this.kind === "daily" ? "clearance" : this.kind;
    const params = this.kind === "daily"
      ? { date_from: this.range.from, date_to: this.range.to }
      : { date_from: this.range.from };
    return download(`/reports/${name}.${extension}${qs({ ...params, district_id: district, lang: currentLang() })}`,
      `clearday-${name}-${this.range.from}.${extension}`);
  }
}
