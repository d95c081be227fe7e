// 调度: plan a date (watch the job's progress), see the routes in distinct colours on the
// roads, print a truck's route sheet, publish, re-plan today's published plan from now.
import {
  api, can, chosenDay, clear, closeModal, fmtHours, forgetTrucks, fmtKm, fmtTime, h, openModal, qs, refusalText, routeColour, routeDash,
  showError,
  textOf, toast,
} from "./core.js";
import { currentLang, has, t } from "./i18n.js";
import { openImport } from "./imports.js";

// The solver budget a planning request carries: none for "auto" (the server decides).
function budgetField(budget) {
  return budget === "auto" ? {} : { time_limit_s: Number(budget) };
}

export class DispatchPage {
  constructor() {
    this.timer = 0;
    this.routeLayers = new Map();
    this.planId = null;
  }

  async mount(ctx) {
    this.ctx = ctx;
    this.el = {
      controls: h("div"),
      progress: h("div", { class: "row", hidden: true, "data-testid": "plan-progress" }),
      plans: h("div", { "data-testid": "plan-list" }),
      summary: h("div", { "data-testid": "plan-summary" }),
      routes: h("div", { "data-testid": "plan-routes" }),
      unassigned: h("div"),
    };
    if (can("admin", "dispatcher")) {
      // "auto": the server's budget, which grows with the district (a re-plan: 30 s).
      const budget = h("select", { id: "plan-budget" },
        h("option", { value: "auto", selected: true }, t("plan.budget_auto")),
        [5, 10, 30, 60, 120, 300, 600].map((s) => h("option", { value: s }, `${s} s`)));
      this.el.controls.append(
        h("div", { class: "row" },
          h("label", { class: "inline" }, t("plan.budget"), budget),
          h("button", { id: "plan-start", "data-testid": "plan-start", onclick: () => this.startPlanning(budget.value) }, t("plan.start")),
          h("button", { class: "secondary", "data-testid": "import-open", onclick: () => openImport(this.ctx, () => this.afterImport()) }, t("import.open"))),
      );
    }
    clear(ctx.panel,
      h("h2", {}, t("plan.title")), this.el.controls, this.el.progress,
      h("h2", {}, t("plan.list")), this.el.plans, this.el.summary,
      h("h2", {}, t("plan.routes")), this.el.routes,
      h("h2", {}, t("plan.unassigned_title")), this.el.unassigned);
    await this.refresh(ctx);
  }

  async afterImport() {
    // New or changed sites, roads and trucks: draw the base map again, read plates anew.
    forgetTrucks();
    this.ctx.map.baseFor = null;
    await this.ctx.map.loadBase(this.ctx.district).catch(showError);
  }

  unmount() {
    clearTimeout(this.timer);
    this.timer = 0;
  }

  async refresh(ctx) {
    this.ctx = ctx;
    const plans = await api(`/plans${qs({ district_id: ctx.district, service_date: ctx.date })}`);
    this.renderPlans(plans);
    const chosen = plans.find((p) => p.status === "published") || plans[0];
    if (chosen) await this.loadPlan(chosen.plan_id);
    else this.clearPlan();
  }

  renderPlans(plans) {
    if (!plans.length) {
      clear(this.el.plans, h("p", { class: "muted" }, t("plan.none")));
      return;
    }
    clear(this.el.plans, h("table", { class: "list" }, plans.map((p) => h("tr", {
      class: `clickable${p.plan_id === this.planId ? " selected" : ""}`,
      dataset: { planId: p.plan_id },
      onclick: () => this.loadPlan(p.plan_id).catch(showError),
    },
    h("td", {}, `#${p.plan_id}`),
    h("td", {}, h("span", { class: `chip ${p.status}` }, t(`plan.status.${p.status}`))),
    h("td", {}, `${p.points} ${t("plan.points")} · ${p.unassigned} ${t("plan.unassigned")}`),
    h("td", { class: "muted" }, fmtTime(p.created_at))))));
  }

  clearPlan() {
    this.planId = null;
    this.ctx.map.clear("routes");
    this.ctx.map.setLegend([]);
    clear(this.el.summary);
    clear(this.el.routes, h("p", { class: "muted" }, t("common.none")));
    clear(this.el.unassigned, h("p", { class: "muted" }, t("common.none")));
  }

  async startPlanning(budget) {
    const button = document.getElementById("plan-start");
    button.disabled = true;
    try {
      // What the top bar shows now, even if this page has not caught up with it yet.
      const { district, date } = chosenDay();
      const job = await api("/plans/jobs", {
        method: "POST",
        body: { district_id: district, service_date: date, ...budgetField(budget) },
      });
      this.watch(job.job_id);
    } catch (err) {
      button.disabled = false;
      showError(err);
    }
  }

  watch(jobId) {
    const bar = h("div", { style: { width: "0%" } });
    const label = h("span", { class: "muted" }, t("plan.running"));
    const cancel = h("button", {
      type: "button", class: "secondary", "data-testid": "plan-cancel",
      onclick: async () => {
        cancel.disabled = true;
        try {
          await api(`/plans/jobs/${jobId}/cancel`, { method: "POST" });
        } catch (err) {
          showError(err);
        }
      },
    }, t("plan.cancel"));
    clear(this.el.progress, h("div", { class: "progress" }, bar), label, cancel);
    this.el.progress.hidden = false;
    const ended = (text) => {
      document.getElementById("plan-start").disabled = false;
      cancel.remove();
      label.textContent = text;
    };
    const poll = async () => {
      try {
        const job = await api(`/plans/jobs/${jobId}`);
        bar.style.width = `${Math.round(job.progress * 100)}%`;
        // The job's message is the planner's English; the Chinese UI says it in its words.
        const words = currentLang() === "en" ? job.message || "" : t(job.state === "done" ? "plan.step_done" : `plan.state.${job.state}`);
        const where = job.worker ? ` · ${t("plan.worker")} ${job.worker}` : "";
        label.textContent = `${t("plan.progress")} ${Math.round(job.progress * 100)}% · ${words}${where}`;
        if (job.state === "done") {
          ended(label.textContent);
          toast(t("plan.done"));
          await this.refresh(this.ctx);
          await this.loadPlan(job.plan_id);
          return;
        }
        if (job.state === "failed") {
          ended(`${t("plan.failed")}: ${refusalText(job.error_code, job.error_params, job.message, t("err.plan_crashed"))}`);
          return;
        }
        if (job.state === "cancelled") {
          ended(t("plan.cancelled"));
          return;
        }
      } catch (err) {
        showError(err);
      }
      this.timer = setTimeout(poll, 1000);
    };
    poll();
  }

  async loadPlan(planId) {
    this.planId = planId;
    for (const row of this.el.plans.querySelectorAll("tr")) {
      row.classList.toggle("selected", Number(row.dataset.planId) === planId);
    }
    const [plan, geo] = await Promise.all([api(`/plans/${planId}`), api(`/plans/${planId}/routes.geojson`)]);
    const { map } = this.ctx;
    map.clear("routes");
    this.routeLayers.clear();
    const order = new Map(plan.routes.map((r, i) => [r.truck_id, i]));
    for (const feature of geo.features) {
      const i = order.get(feature.id) ?? 0;
      const layer = map.geoJSON(feature, { style: { color: routeColour(i), dashArray: routeDash(i), weight: 4, opacity: 0.85 } })
        .bindTooltip(textOf(feature.properties.plate || feature.id))
        .addTo(map.layers.routes);
      this.routeLayers.set(feature.id, layer);
    }
    map.setLegend(plan.routes.map((r, i) => [routeColour(i), r.plate || r.truck_id, { line: true, dashed: !!routeDash(i) }]));
    const distance = plan.routes.reduce((sum, r) => sum + r.distance_m, 0);
    clear(this.el.summary,
      h("div", { class: "stats" },
        h("div", { class: "stat" }, h("b", {}, plan.trucks), h("small", {}, t("plan.trucks"))),
        h("div", { class: "stat" }, h("b", {}, plan.points), h("small", {}, t("plan.points"))),
        h("div", { class: "stat" }, h("b", { "data-testid": "plan-unassigned-count" }, plan.unassigned), h("small", {}, t("plan.unassigned"))),
        h("div", { class: "stat" }, h("b", {}, (distance / 1000).toFixed(0)), h("small", {}, `${t("plan.distance")} ${t("common.km")}`))),
      h("div", { class: "row" },
        h("span", { class: `chip ${plan.status}`, "data-testid": "plan-status" }, t(`plan.status.${plan.status}`)),
        plan.replaces_plan_id ? h("span", { class: "muted" }, `${t("plan.replaces")} #${plan.replaces_plan_id}`) : null,
        plan.status === "draft" && can("admin", "dispatcher")
          ? h("button", { "data-testid": "plan-publish", onclick: () => this.publish(planId) }, t("plan.publish"))
          : null,
        plan.status === "published" && can("admin", "dispatcher")
          ? h("button", { class: "secondary", "data-testid": "plan-replan", onclick: () => this.askReplan(plan) }, t("plan.replan"))
          : null));
    clear(this.el.routes, h("table", { class: "list" }, plan.routes.map((r) => h("tr", {
      class: "clickable",
      onmouseenter: () => this.highlight(r.truck_id, true),
      onmouseleave: () => this.highlight(r.truck_id, false),
      onclick: () => this.showSheet(planId, r.truck_id).catch(showError),
    },
    h("td", {}, h("span", { class: "swatch", style: { background: routeColour(order.get(r.truck_id)) } }), r.plate || r.truck_id),
    h("td", {}, `${r.points} ${t("plan.points")}`),
    h("td", {}, `${r.station_trips}× ${t("kind.station")}`),
    h("td", {}, fmtKm(r.distance_m)),
    h("td", {}, fmtHours(r.duration_s))))));
    clear(this.el.unassigned, plan.unassigned_points.length
      ? h("table", { class: "list" }, plan.unassigned_points.map((u) => h("tr", {},
        h("td", {}, u.point_id), h("td", {}, u.name || ""),
        h("td", { class: "muted" }, has(`reason.${u.reason}`) ? t(`reason.${u.reason}`) : u.reason))))
      : h("p", { class: "muted" }, t("common.none")));
  }

  highlight(truckId, on) {
    const layer = this.routeLayers.get(truckId);
    if (!layer) return;
    layer.setStyle({ weight: on ? 8 : 4, opacity: on ? 1 : 0.85 });
    if (on) layer.bringToFront();
  }

  async publish(planId) {
    try {
      await api(`/plans/${planId}/publish`, { method: "POST" });
      toast(t("plan.published"));
      await this.refresh(this.ctx);
    } catch (err) {
      showError(err);
    }
  }

  askReplan(plan) {
    const boxes = plan.routes.map((r) => h("input", { type: "checkbox", value: r.truck_id }));
    const budget = document.getElementById("plan-budget");
    openModal(h("div", { "data-testid": "replan-form" },
      h("h3", {}, `${t("plan.replan")} · #${plan.plan_id}`),
      h("p", { class: "muted" }, t("plan.replan_hint")),
      h("p", {}, t("plan.replan_unavailable")),
      h("div", { class: "row" }, plan.routes.map((r, i) => h("label", { class: "inline" }, boxes[i], r.plate || r.truck_id))),
      h("div", { class: "row" },
        h("button", {
          "data-testid": "replan-start",
          onclick: () => this.replan(plan.plan_id, boxes.filter((b) => b.checked).map((b) => b.value), budget ? budget.value : "auto"),
        }, t("plan.replan_start")),
        h("button", { class: "secondary", onclick: closeModal }, t("common.close")))));
  }

  async replan(planId, unavailable, budget) {
    try {
      const job = await api(`/plans/${planId}/replan`, {
        method: "POST",
        body: { unavailable_truck_ids: unavailable, ...budgetField(budget) },
      });
      closeModal();
      document.getElementById("plan-start").disabled = true;
      this.watch(job.job_id);
    } catch (err) {
      showError(err);
    }
  }

  async showSheet(planId, truckId) {
    const sheet = await api(`/plans/${planId}/sheet/${encodeURIComponent(truckId)}`);
    openModal(h("div", { class: "sheet", "data-testid": "route-sheet" },
      h("h3", {}, `${t("plan.sheet")} · ${sheet.plate || sheet.truck_id}`),
      h("p", { class: "muted" },
        `${sheet.district_name} · ${sheet.service_date} · #${sheet.plan_id} ${t(`plan.status.${sheet.status}`)} · `
        + `${fmtKm(sheet.distance_m)} · ${sheet.points} ${t("plan.points")} · ${sheet.station_trips}× ${t("kind.station")}`),
      h("table", { class: "list" },
        h("tr", {}, ["sheet.seq", "sheet.kind", "sheet.name", "sheet.arrive", "sheet.depart", "sheet.load"].map((k) => h("th", {}, t(k)))),
        sheet.stops.map((s) => h("tr", {},
          h("td", {}, s.seq), h("td", {}, t(`kind.${s.kind}`)),
          h("td", {}, s.ref_id ? `${s.ref_id} ${s.name || ""}` : ""),
          h("td", {}, s.arrive), h("td", {}, s.depart),
          h("td", {}, `${Math.round(s.load_after_kg)} ${t("common.kg")}`)))),
      h("div", { class: "row no-print" },
        h("button", { onclick: () => window.print() }, t("common.print")),
        h("button", { class: "secondary", onclick: closeModal }, t("common.close")))));
  }
}
