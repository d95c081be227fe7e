// zh-CN first; English available. Keys are looked up in the current language, then zh.
const STRINGS = {
  zh: {
    "login.tagline": "环卫收运调度与日产日清监管平台",
    "login.username": "用户名", "login.password": "密码", "login.submit": "登录",
    "login.failed": "用户名或密码错误",
    "nav.dispatch": "调度", "nav.live": "监控", "nav.supervise": "监管",
    "top.district": "区域", "top.date": "作业日期", "top.logout": "退出", "lang.switch": "English",
    "role.admin": "管理员", "role.dispatcher": "调度员", "role.supervisor": "监管员", "role.viewer": "只读",
    "common.loading": "加载中…", "common.none": "暂无", "common.close": "关闭", "common.print": "打印",
    "common.km": "公里", "common.min": "分钟", "common.kg": "公斤", "common.h": "小时",
    "layer.roads": "道路", "layer.sites": "站点", "layer.tiles": "底图", "layer.routes": "路线",
    "layer.trucks": "车辆", "layer.ledger": "台账", "layer.track": "轨迹",
    "site.depot": "车场", "site.station": "中转站", "site.point": "收集点",
    "stream.other": "其他垃圾", "stream.kitchen": "厨余垃圾", "stream.recyclable": "可回收物",
    "stream.hazardous": "有害垃圾", "stream.mixed": "混合垃圾",
    "plan.title": "路线规划", "plan.start": "开始规划", "plan.budget": "求解时间",
    "plan.running": "规划中", "plan.failed": "规划失败", "plan.done": "规划完成",
    "plan.list": "当日方案", "plan.none": "该日期还没有方案", "plan.publish": "发布",
    "plan.status.draft": "草稿", "plan.status.published": "已发布", "plan.status.superseded": "已替代",
    "plan.trucks": "车辆", "plan.points": "收集点", "plan.unassigned": "未安排", "plan.distance": "总里程",
    "plan.routes": "车辆路线", "plan.sheet": "路线单", "plan.unassigned_title": "未安排的收集点",
    "plan.published": "方案已发布",
    "plan.replan": "从现在重新规划", "plan.replan_start": "开始重新规划", "plan.replaces": "替代方案",
    "plan.replan_hint": "从各车当前位置和载重出发，保留已完成的站点，漏收的收集点重新安排；结果为草稿，发布后生效。",
    "plan.replan_unavailable": "停用车辆（故障）：其余收集点由其他车辆承担",
    "sheet.seq": "序号", "sheet.kind": "类型", "sheet.name": "地点", "sheet.arrive": "到达",
    "sheet.depart": "离开", "sheet.load": "载重", "sheet.total": "合计",
    "kind.start": "出车", "kind.point": "收运", "kind.station": "卸料", "kind.break": "休息", "kind.end": "收车",
    "live.title": "实时车辆", "live.connected": "实时连接", "live.reconnecting": "重连中…",
    "live.track": "今日轨迹", "live.fixes": "个定位点", "live.age": "更新", "live.ago_s": "秒前", "live.ago_min": "分钟前",
    "status.moving": "行驶中", "status.at_point": "收运中", "status.unloading": "卸料中",
    "status.parked": "在场", "status.stopped": "停留", "status.offline": "离线", "status.no_data": "无数据",
    "sup.ledger": "日清台账", "sup.cases": "案件", "sup.alerts": "告警", "sup.report": "日报",
    "sup.active": "未结案", "sup.all": "全部",
    "ledger.cleared": "已清运", "ledger.partial": "不完整", "ledger.missed": "漏收",
    "ledger.unverifiable": "无法核实", "ledger.pending": "待收运",
    "case.open": "待交办", "case.assigned": "已交办", "case.feedback": "已反馈", "case.closed": "已销号",
    "case.assign": "交办", "case.feedback_action": "反馈", "case.close": "销号",
    "case.assignee": "责任人/班组/车辆", "case.note": "说明", "case.note_required": "销号必须填写说明",
    "case.due": "期限", "case.overdue": "已超期", "case.timeline": "处理记录", "case.alerts": "关联告警",
    "case.done": "已保存",
    "alert.missed": "漏收", "alert.drive_by": "路过未停", "alert.not_cleared_by_deadline": "未日清",
    "alert.not_unloaded": "未卸料", "alert.offline": "终端离线", "alert.stationary": "异常停留",
    "severity.high": "严重", "severity.normal": "一般",
    "report.rate": "日清率", "report.by_district": "各区日清率", "report.by_day": "近7日日清率",
    "report.csv": "导出CSV", "report.due": "应收", "report.cleared": "已清",
  },
  en: {
    "login.tagline": "Waste collection dispatch and daily clearance supervision",
    "login.username": "Username", "login.password": "Password", "login.submit": "Log in",
    "login.failed": "Wrong username or password",
    "nav.dispatch": "Dispatch", "nav.live": "Live", "nav.supervise": "Supervision",
    "top.district": "District", "top.date": "Service date", "top.logout": "Log out", "lang.switch": "中文",
    "role.admin": "admin", "role.dispatcher": "dispatcher", "role.supervisor": "supervisor", "role.viewer": "viewer",
    "common.loading": "Loading…", "common.none": "None", "common.close": "Close", "common.print": "Print",
    "common.km": "km", "common.min": "min", "common.kg": "kg", "common.h": "h",
    "layer.roads": "Roads", "layer.sites": "Sites", "layer.tiles": "Tiles", "layer.routes": "Routes",
    "layer.trucks": "Trucks", "layer.ledger": "Ledger", "layer.track": "Track",
    "site.depot": "Depot", "site.station": "Transfer station", "site.point": "Collection point",
    "stream.other": "Residual", "stream.kitchen": "Kitchen", "stream.recyclable": "Recyclable",
    "stream.hazardous": "Hazardous", "stream.mixed": "Mixed",
    "plan.title": "Route planning", "plan.start": "Plan this date", "plan.budget": "Solver time",
    "plan.running": "Planning", "plan.failed": "Planning failed", "plan.done": "Plan ready",
    "plan.list": "Plans for the date", "plan.none": "No plan for this date yet", "plan.publish": "Publish",
    "plan.status.draft": "draft", "plan.status.published": "published", "plan.status.superseded": "superseded",
    "plan.trucks": "Trucks", "plan.points": "Points", "plan.unassigned": "Unassigned", "plan.distance": "Distance",
    "plan.routes": "Routes", "plan.sheet": "Route sheet", "plan.unassigned_title": "Points left out",
    "plan.published": "Plan published",
    "plan.replan": "Re-plan from now", "plan.replan_start": "Re-plan", "plan.replaces": "replaces",
    "plan.replan_hint": "Starts from each truck's live position and load, keeps the stops already made and re-inserts missed points; the result is a draft to publish.",
    "plan.replan_unavailable": "Trucks out of service (broken down): other trucks take their points",
    "sheet.seq": "#", "sheet.kind": "Kind", "sheet.name": "Place", "sheet.arrive": "Arrive",
    "sheet.depart": "Depart", "sheet.load": "Load", "sheet.total": "Total",
    "kind.start": "Start", "kind.point": "Collect", "kind.station": "Unload", "kind.break": "Break", "kind.end": "End",
    "live.title": "Live trucks", "live.connected": "Live", "live.reconnecting": "Reconnecting…",
    "live.track": "Today's track", "live.fixes": "fixes", "live.age": "Updated", "live.ago_s": "s ago", "live.ago_min": "min ago",
    "status.moving": "moving", "status.at_point": "at point", "status.unloading": "unloading",
    "status.parked": "parked", "status.stopped": "stopped", "status.offline": "offline", "status.no_data": "no data",
    "sup.ledger": "Clearance ledger", "sup.cases": "Cases", "sup.alerts": "Alerts", "sup.report": "Daily report",
    "sup.active": "Open", "sup.all": "All",
    "ledger.cleared": "cleared", "ledger.partial": "partial", "ledger.missed": "missed",
    "ledger.unverifiable": "unverifiable", "ledger.pending": "pending",
    "case.open": "open", "case.assigned": "assigned", "case.feedback": "feedback", "case.closed": "closed",
    "case.assign": "Assign", "case.feedback_action": "Feedback", "case.close": "Close",
    "case.assignee": "Assignee (crew, person, truck)", "case.note": "Note", "case.note_required": "A note is required to close",
    "case.due": "Due", "case.overdue": "overdue", "case.timeline": "Timeline", "case.alerts": "Alerts",
    "case.done": "Saved",
    "alert.missed": "missed", "alert.drive_by": "drive-by", "alert.not_cleared_by_deadline": "not cleared by deadline",
    "alert.not_unloaded": "not unloaded", "alert.offline": "terminal offline", "alert.stationary": "stationary",
    "severity.high": "high", "severity.normal": "normal",
    "report.rate": "Clearance rate", "report.by_district": "By district", "report.by_day": "Last 7 days",
    "report.csv": "Export CSV", "report.due": "Due", "report.cleared": "Cleared",
  },
};

let lang = localStorage.getItem("clearday.lang") === "en" ? "en" : "zh";

export function t(key) {
  return STRINGS[lang][key] ?? STRINGS.zh[key] ?? key;
}

export function currentLang() {
  return lang;
}

export function setLang(value) {
  lang = value === "en" ? "en" : "zh";
  localStorage.setItem("clearday.lang", lang);
  applyStatic();
}

export function applyStatic(root = document) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-lang-toggle]")) el.textContent = t("lang.switch");
}
