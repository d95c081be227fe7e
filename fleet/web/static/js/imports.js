// 导入: depots / stations / points / trucks CSV and roads GeoJSON sent to POST /import —
// checked first (dry run), then imported, all or nothing. A refusal lists every refused
// line with its file and line number, each problem in the UI's language (by its code).
import { ApiError, api, clear, closeModal, fieldProblem, h, openModal, showError } from "./core.js";
import { currentLang, t } from "./i18n.js";

const MAX_FILES = 10; // as POST /import allows

// "points.csv:12" -> ["points.csv", "12"]; a field error of the request itself has no line.
function place(field) {
  const at = field.lastIndexOf(":");
  return at < 0 ? [field, ""] : [field.slice(0, at), field.slice(at + 1)];
}

function lineLabel(file, line) {
  if (line === "") return "";
  if (line === "0") return t("import.whole_file");
  return file.endsWith(".geojson") ? `${t("import.feature")} ${line}` : line;
}

// An OpenStreetMap .osm.pbf extract is binary: sent as base64.
async function readFile(file) {
  if (!file.name.toLowerCase().endsWith(".pbf")) return readText(file);
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return { text: btoa(binary), encoding: "base64" };
}

// The file's text, or a message naming the first line that is not UTF-8.
async function readText(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes) };
  } catch {
    let line = 1;
    let start = 0;
    for (let i = 0; i <= bytes.length; i += 1) {
      if (i === bytes.length || bytes[i] === 10) {
        try {
          new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(start, i));
        } catch {
          return { error: { field: `${file.name}:${line}`, message: t("import.not_utf8") } };
        }
        line += 1;
        start = i + 1;
      }
    }
    return { error: { field: `${file.name}:0`, message: t("import.not_utf8") } };
  }
}

function refusalTable(errors) {
  return h("table", { class: "list", "data-testid": "import-errors" },
    h("tr", {}, h("th", {}, t("import.file")), h("th", {}, t("import.line")), h("th", {}, t("import.problem"))),
    errors.map((e) => {
      const [file, line] = place(e.field);
      return h("tr", {},
        h("td", {}, file),
        h("td", { class: "num" }, lineLabel(file, line)),
        h("td", {}, fieldProblem(e)));
    }));
}

function showRefusal(out, status, problem) {
  const headline = { 403: "import.refused_forbidden", 409: "import.refused_conflict", 422: "import.refused_invalid" }[status];
  const errors = problem?.errors || [];
  clear(out,
    h("p", { class: "error", "data-testid": "import-refused" }, headline ? t(headline) : (problem?.detail || `HTTP ${status}`)),
    h("p", { class: "muted" }, currentLang() === "zh" ? t("import.nothing_written") : problem?.detail || ""),
    errors.length ? refusalTable(errors) : null);
}

function showDone(out, result) {
  const kinds = Object.keys(result.rows);
  clear(out,
    h("p", { "data-testid": "import-ok" }, t(result.dry_run ? "import.checked" : "import.done")),
    h("table", { class: "list" },
      h("tr", {}, h("th", {}, ""), h("th", {}, t("import.rows")), h("th", {}, t("import.inserted")), h("th", {}, t("import.updated"))),
      kinds.map((k) => h("tr", {},
        h("td", {}, t(`import.kind.${k}`)), h("td", {}, result.rows[k]),
        h("td", {}, result.inserted[k] ?? 0), h("td", {}, result.updated[k] ?? 0)))),
    result.created_districts.length
      ? h("p", { class: "muted" }, `${t("import.created")}: ${result.created_districts.join(", ")}`)
      : null,
    // What each OpenStreetMap extract kept and dropped.
    Object.entries(result.osm || {}).map(([file, kept]) => h("p", { class: "muted", "data-testid": "import-osm" },
      `${file}: ${Object.entries(kept).map(([k, n]) => `${t(`import.osm.${k}`)} ${n}`).join(" · ")}`)));
}

export function openImport(ctx, onImported) {
  const input = h("input", { type: "file", multiple: true, accept: ".csv,.geojson,.osm,.pbf", "data-testid": "import-files" });
  const out = h("div", { "data-testid": "import-result", "aria-live": "polite" });
  const run = async (dryRun) => {
    const chosen = [...input.files].slice(0, MAX_FILES);
    if (!chosen.length) {
      clear(out, h("p", { class: "error" }, t("import.no_files")));
      return;
    }
    const read = await Promise.all(chosen.map(readFile));
    const unreadable = read.filter((r) => r.error).map((r) => r.error);
    if (unreadable.length) {
      showRefusal(out, 422, { detail: t("import.not_utf8"), errors: unreadable });
      return;
    }
    // File names decide the kind (points*.csv …); the API takes plain ASCII names.
    const files = chosen.map((f, i) => ({ name: f.name.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 100), content: read[i].text, encoding: read[i].encoding || "utf-8" }));
    try {
      const result = await api("/import", { method: "POST", body: { files, district: ctx.district, dry_run: dryRun } });
      showDone(out, result);
      if (!dryRun) onImported();
    } catch (err) {
      if (err instanceof ApiError && [403, 409, 422].includes(err.status)) showRefusal(out, err.status, err.problem);
      else showError(err);
    }
  };
  openModal(h("div", { "data-testid": "import-form" },
    h("h3", {}, `${t("import.title")} · ${ctx.district}`),
    h("p", { class: "muted" }, t("import.hint")),
    h("div", { class: "row" }, input),
    h("div", { class: "row" },
      h("button", { "data-testid": "import-check", onclick: () => run(true) }, t("import.check")),
      h("button", { "data-testid": "import-run", onclick: () => run(false) }, t("import.run")),
      h("button", { class: "secondary", onclick: closeModal }, t("common.close"))),
    out));
}
