// How a ledger verdict reads to a person: the reason in words, the last evidence, and
// the confidence where the API gives one. Mirrors `reason_text` in fleet/alerts/reports.py,
// in both languages.
import { fmtDuration, fmtTime } from "./core.js";
import { has, t } from "./i18n.js";

export function whyText(entry) {
  const { status, reason, delivery } = entry;
  if (status === "cleared" && delivery === "not_delivered") return t("why.not_delivered");
  if (reason && reason.startsWith("unassigned: ")) {
    const code = reason.slice("unassigned: ".length);
    return `${t("why.unassigned")}: ${has(`reason.${code}`) ? t(`reason.${code}`) : code}`;
  }
  if (reason && has(`why.${reason}`)) return t(`why.${reason}`);
  return has(`why.${status}`) ? t(`why.${status}`) : status;
}

// The newest piece of evidence: the visit that cleared the point, else the last attempt
// (a pass or a short stay), else a gap in the positions.
export function lastEvidence(entry) {
  const ev = entry.evidence || {};
  const attempts = ev.attempts || [];
  const visit = ev.visit || attempts[attempts.length - 1];
  if (visit) {
    const kind = has(`evidence.${visit.kind}`) ? t(`evidence.${visit.kind}`) : visit.kind;
    const parts = [`${kind} ${fmtTime(visit.arrived_at)}`];
    if (visit.dwell_s) parts.push(fmtDuration(visit.dwell_s));
    if (visit.distance_m !== undefined && visit.distance_m !== null) parts.push(`${Math.round(visit.distance_m)} ${t("evidence.m")}`);
    return { text: parts.join(" · "), truckId: visit.truck_id, at: visit.arrived_at };
  }
  const gaps = ev.gaps || [];
  if (gaps.length) {
    const g = gaps[gaps.length - 1];
    return { text: `${t("evidence.gap")} ${fmtTime(g.start_at)}–${fmtTime(g.end_at)}`, truckId: null, at: g.start_at };
  }
  return { text: t("evidence.none"), truckId: null, at: null };
}

export function confidenceText(entry) {
  const value = entry.confidence ?? entry.evidence?.confidence;
  if (value === undefined || value === null) return "—";
  if (typeof value === "number") return `${Math.round(value * 100)}%`;
  return has(`confidence.${value}`) ? t(`confidence.${value}`) : String(value);
}
