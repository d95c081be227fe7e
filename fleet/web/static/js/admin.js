// 管理: users (role, districts, password, deactivation) and districts (name, time zone),
// for an admin who is not limited to districts (the API refuses everyone else).
import { api, clear, h, session, table, toast } from "./core.js";
import { t } from "./i18n.js";

const ROLES = ["admin", "dispatcher", "supervisor", "viewer"];

export class AdminPage {
  async mount(ctx) {
    this.ctx = ctx;
    this.el = {
      users: h("div", { "data-testid": "adm-users" }),
      newUser: h("div", { "data-testid": "adm-new-user" }),
      districts: h("div", { "data-testid": "adm-districts" }),
      newDistrict: h("div", { "data-testid": "adm-new-district" }),
      error: h("p", { class: "error", role: "alert", "data-testid": "adm-error" }),
    };
    clear(ctx.panel, h("div", { class: "admin-page" },
      h("h2", {}, t("adm.title")), this.el.error,
      h("h3", {}, t("adm.users")), this.el.users, h("h4", {}, t("adm.new_user")), this.el.newUser,
      h("h3", {}, t("adm.districts")), this.el.districts, h("h4", {}, t("adm.new_district")), this.el.newDistrict));
    await this.refresh(ctx);
  }

  unmount() {}

  async refresh(ctx) {
    this.ctx = ctx;
    const [users, districts] = await Promise.all([api("/users"), api("/districts")]);
    this.districtList = districts;
    this.renderUsers(users);
    this.renderNewUser();
    this.renderDistricts(districts);
    this.renderNewDistrict();
  }

  async run(work, message) {
    this.el.error.textContent = "";
    try {
      await work();
      toast(message);
      await this.refresh(this.ctx);
    } catch (err) {
      // The server says which rule failed (a weak password, a taken name).
      this.el.error.textContent = err.message;
      toast(err.message, { error: true });
    }
  }

  districtBoxes(chosen) {
    return this.districtList.map((d) => h("label", { class: "inline" },
      h("input", { type: "checkbox", value: d.district_id, checked: chosen.includes(d.district_id) }), d.name));
  }

  renderUsers(users) {
    const roleName = (r) => t(`role.${r}`);
    clear(this.el.users, table(users, [
      [t("col.user"), (u) => u.username],
      [t("col.name"), (u) => u.display_name],
      [t("col.role"), (u) => roleName(u.role)],
      [t("col.districts"), (u) => (u.districts.length ? u.districts.join(t("common.list_sep")) : t("adm.all_districts"))],
      [t("col.active"), (u) => (u.active ? t("common.yes") : t("common.no"))],
      ["", (u) => h("button", { class: "link", "data-testid": "adm-edit", onclick: () => this.editUser(u) }, t("adm.edit"))],
    ], (u) => ({ dataset: { username: u.username }, class: u.active ? "" : "muted" })));
  }

  editUser(user) {
    const role = h("select", {}, ROLES.map((r) => h("option", { value: r, selected: r === user.role }, t(`role.${r}`))));
    const name = h("input", { value: user.display_name, placeholder: t("adm.display_name") });
    const password = h("input", { type: "password", placeholder: t("adm.new_password"), autocomplete: "new-password" });
    const boxes = this.districtBoxes(user.districts);
    const row = this.el.users.querySelector(`tr[data-username="${CSS.escape(user.username)}"]`);
    const form = h("tr", { class: "edit" }, h("td", { colspan: 6 },
      h("div", { class: "row" }, name, role, password),
      h("div", { class: "row" }, boxes),
      h("div", { class: "row" },
        h("button", {
          "data-testid": "adm-save",
          onclick: () => this.run(() => api(`/users/${user.user_id}`, {
            method: "PATCH",
            body: {
              display_name: name.value.trim(), role: role.value,
              districts: boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value),
              ...(password.value ? { password: password.value } : {}),
            },
          }), t("adm.saved")),
        }, t("common.save")),
        h("button", {
          class: user.active ? "danger" : "secondary", "data-testid": "adm-toggle",
          onclick: () => this.run(() => api(`/users/${user.user_id}`, { method: "PATCH", body: { active: !user.active } }), t("adm.saved")),
        }, user.active ? t("adm.deactivate") : t("adm.activate")),
        h("button", { class: "secondary", onclick: () => form.remove() }, t("common.cancel")))));
    this.el.users.querySelectorAll("tr.edit").forEach((r) => r.remove());
    row.after(form);
  }

  renderNewUser() {
    const username = h("input", { "data-testid": "adm-username", placeholder: t("adm.username"), autocomplete: "off" });
    const name = h("input", { "data-testid": "adm-display-name", placeholder: t("adm.display_name") });
    const role = h("select", { "data-testid": "adm-role" }, ROLES.map((r) => h("option", { value: r, selected: r === "supervisor" }, t(`role.${r}`))));
    const password = h("input", { type: "password", "data-testid": "adm-password", placeholder: t("adm.password"), autocomplete: "new-password" });
    const boxes = this.districtBoxes([]);
    clear(this.el.newUser,
      h("div", { class: "row" }, username, name, role, password),
      h("div", { class: "row", "data-testid": "adm-user-districts" }, boxes),
      h("button", {
        "data-testid": "adm-create",
        onclick: () => this.run(() => api("/users", {
          method: "POST",
          body: {
            username: username.value.trim(), display_name: name.value.trim(), role: role.value, password: password.value,
            districts: boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value),
          },
        }), t("adm.created")),
      }, t("adm.new_user")));
  }

  renderDistricts(districts) {
    clear(this.el.districts, table(districts, [
      [t("adm.district_id"), (d) => d.district_id],
      [t("adm.district_name"), (d) => {
        const input = h("input", { value: d.name, "data-testid": "adm-district-name" });
        const tz = h("input", { value: d.timezone, size: 14 });
        return h("span", { class: "row" }, input, tz, h("button", {
          class: "secondary",
          onclick: () => this.run(() => api(`/districts/${encodeURIComponent(d.district_id)}`, {
            method: "PATCH", body: { name: input.value.trim(), timezone: tz.value.trim() },
          }), t("adm.saved")),
        }, t("common.save")));
      }],
      [t("plan.points"), (d) => d.points],
      [t("plan.trucks"), (d) => d.trucks],
    ]));
  }

  renderNewDistrict() {
    const id = h("input", { "data-testid": "adm-district-id", placeholder: t("adm.district_id") });
    const name = h("input", { placeholder: t("adm.district_name") });
    const tz = h("input", { value: session.config.timezone, size: 14 });
    clear(this.el.newDistrict, h("div", { class: "row" }, id, name, tz, h("button", {
      "data-testid": "adm-district-create",
      onclick: () => this.run(() => api("/districts", {
        method: "POST", body: { district_id: id.value.trim(), name: name.value.trim(), timezone: tz.value.trim() },
      }), t("adm.created")),
    }, t("adm.new_district"))));
  }
}
