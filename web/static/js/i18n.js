// One message table per language; zh-CN first. Every visible string comes from here.
const MESSAGES = {
  "zh-CN": {
    "lang.toggle": "English",
    "app.name": "窗口通 远程视频咨询",
    "login.title": "登录",
    "login.username": "用户名",
    "login.password": "密码",
    "login.submit": "登录",
    "login.failed": "用户名或密码错误",
    "login.throttled": "尝试次数过多，请稍后再试",
    "login.wrong_role": "此账号不能使用本页面",
    "logout": "退出登录",
    "error.generic": "操作失败，请重试",
    "error.offline": "网络连接中断，正在重新连接…",
    "page.kiosk": "市民自助终端",
    "page.expert": "部门专家工作台",
    "page.clerk": "综合窗口",
    "page.admin": "系统管理",
    "kiosk.welcome": "请选择要咨询的部门",
    "kiosk.case_number": "受理单号（可选）",
    "kiosk.online": "{n} 位专家在线",
    "kiosk.nobody_online": "暂无专家在线",
    "kiosk.waiting": "正在排队",
    "kiosk.position": "您前面还有 {ahead} 位，当前第 {position} 位",
    "kiosk.wait": "预计等待约 {minutes} 分钟",
    "kiosk.wait_unknown": "暂无专家在线，请稍候",
    "kiosk.offered": "正在为您接通专家…",
    "kiosk.cancel": "取消排队",
    "kiosk.in_call": "正在与专家通话",
    "kiosk.expert_reconnecting": "专家网络不稳定，正在重新连接…",
    "kiosk.ended": "咨询已结束",
    "kiosk.rate": "请为本次服务评分",
    "kiosk.thanks": "谢谢您的评价",
    "kiosk.no_expert": "暂无专家接听，请稍后再试或到窗口咨询",
    "call.status.connecting": "正在连接",
    "call.end": "结束通话",
    "call.end_confirm": "确定要结束通话吗？",
    "confirm.yes": "确定",
    "confirm.no": "取消",
    "chat.placeholder": "输入文字消息",
    "chat.send": "发送",
    "chat.you": "我",
    "chat.kiosk": "市民",
    "chat.expert": "专家",
    "expert.available": "接听中（点击暂停）",
    "expert.away": "暂停接听（点击开始）",
    "expert.queue": "本部门排队",
    "expert.queue_empty": "当前无人排队",
    "expert.waiting_for": "已等待 {minutes} 分钟",
    "expert.case": "单号 {case}",
    "expert.no_case": "未填单号",
    "expert.offer": "新的咨询请求",
    "expert.accept": "接听",
    "expert.decline": "拒绝",
    "expert.countdown": "{seconds} 秒后转给其他专家",
    "expert.in_call": "通话中",
    "expert.outcome": "咨询结果",
    "outcome.answered": "已解答",
    "outcome.follow_up": "需后续跟进",
    "outcome.referred": "已转其他部门",
    "expert.notes": "备注",
    "expert.save_outcome": "保存结果",
    "expert.saved": "已保存",
    "expert.kiosk_reconnecting": "市民网络不稳定，正在重新连接…",
    "files.choose": "选择文件发送",
    "files.uploading": "正在发送…",
    "files.failed": "发送失败，请重试",
    "files.wrong_type": "只能发送 PDF、JPG、PNG 或 OFD 文件",
    "files.preview": "预览",
    "clerk.files": "咨询中交换的材料",
    "clerk.attach": "归入办件",
    "clerk.attached": "已归入",
    "clerk.attachments": "办件材料",
    "clerk.download": "下载",
    "category.application": "申请材料",
    "category.supplementary": "补充材料",
    "category.reply": "部门答复",
    "clerk.search": "输入受理单号后按回车",
    "clerk.none": "未找到相关咨询",
    "clerk.state.ended": "已结束",
    "clerk.state.active": "进行中",
    "clerk.state.waiting": "排队中",
    "clerk.state.offered": "接通中",
    "admin.departments": "部门",
    "admin.accounts": "账号",
    "admin.disabled": "已停用",
    "role.kiosk": "终端",
    "role.expert": "专家",
    "role.clerk": "窗口人员",
    "role.admin": "管理员",
  },
  en: {
    "lang.toggle": "中文",
    "app.name": "windowlink video consultation",
    "login.title": "Log in",
    "login.username": "Username",
    "login.password": "Password",
    "login.submit": "Log in",
    "login.failed": "Wrong username or password",
    "login.throttled": "Too many attempts, please wait and try again",
    "login.wrong_role": "This account cannot use this page",
    "logout": "Log out",
    "error.generic": "That did not work, please try again",
    "error.offline": "Connection lost, reconnecting…",
    "page.kiosk": "Citizen kiosk",
    "page.expert": "Expert desk",
    "page.clerk": "Front window",
    "page.admin": "Administration",
    "kiosk.welcome": "Choose the department you want to consult",
    "kiosk.case_number": "Case number (optional)",
    "kiosk.online": "{n} experts online",
    "kiosk.nobody_online": "No expert online now",
    "kiosk.waiting": "In the queue",
    "kiosk.position": "{ahead} ahead of you, you are number {position}",
    "kiosk.wait": "Estimated wait about {minutes} min",
    "kiosk.wait_unknown": "No expert online yet, please wait",
    "kiosk.offered": "Connecting you to an expert…",
    "kiosk.cancel": "Leave the queue",
    "kiosk.in_call": "In a call with the expert",
    "kiosk.expert_reconnecting": "The expert's connection is unstable, reconnecting…",
    "kiosk.ended": "The consultation has ended",
    "kiosk.rate": "Please rate this service",
    "kiosk.thanks": "Thank you for your rating",
    "kiosk.no_expert": "No expert could answer; please try later or ask at the window",
    "call.status.connecting": "Connecting",
    "call.end": "End call",
    "call.end_confirm": "End the call?",
    "confirm.yes": "Yes",
    "confirm.no": "Cancel",
    "chat.placeholder": "Type a message",
    "chat.send": "Send",
    "chat.you": "Me",
    "chat.kiosk": "Citizen",
    "chat.expert": "Expert",
    "expert.available": "Taking calls (click to pause)",
    "expert.away": "Paused (click to take calls)",
    "expert.queue": "Department queue",
    "expert.queue_empty": "Nobody is waiting",
    "expert.waiting_for": "waiting {minutes} min",
    "expert.case": "case {case}",
    "expert.no_case": "no case number",
    "expert.offer": "New consultation request",
    "expert.accept": "Accept",
    "expert.decline": "Decline",
    "expert.countdown": "Goes to another expert in {seconds} s",
    "expert.in_call": "In a call",
    "expert.outcome": "Outcome",
    "outcome.answered": "Answered",
    "outcome.follow_up": "Needs follow-up",
    "outcome.referred": "Referred elsewhere",
    "expert.notes": "Notes",
    "expert.save_outcome": "Save outcome",
    "expert.saved": "Saved",
    "expert.kiosk_reconnecting": "The citizen's connection is unstable, reconnecting…",
    "files.choose": "Choose a file to send",
    "files.uploading": "Sending…",
    "files.failed": "Sending failed, please try again",
    "files.wrong_type": "Only PDF, JPG, PNG or OFD files can be sent",
    "files.preview": "Preview",
    "clerk.files": "Documents exchanged in the consultation",
    "clerk.attach": "Attach to case",
    "clerk.attached": "Attached",
    "clerk.attachments": "Case documents",
    "clerk.download": "Download",
    "category.application": "Application material",
    "category.supplementary": "Supplementary material",
    "category.reply": "Reply from the department",
    "clerk.search": "Type the case number and press Enter",
    "clerk.none": "No consultation found",
    "clerk.state.ended": "ended",
    "clerk.state.active": "in progress",
    "clerk.state.waiting": "waiting",
    "clerk.state.offered": "connecting",
    "admin.departments": "Departments",
    "admin.accounts": "Accounts",
    "admin.disabled": "disabled",
    "role.kiosk": "kiosk",
    "role.expert": "expert",
    "role.clerk": "clerk",
    "role.admin": "admin",
  },
};

const LANG_KEY = "wl_lang";
let current = "zh-CN";
const listeners = new Set();

export function language() {
  return current;
}

export function t(key, vars = {}) {
  const table = MESSAGES[current];
  const text = table[key] ?? MESSAGES["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

export function applyTranslations(root = document) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
}

export function setLanguage(lang, { remember = true } = {}) {
  current = MESSAGES[lang] ? lang : "zh-CN";
  if (remember) {
    try {
      localStorage.setItem(LANG_KEY, current);
    } catch {
      // Storage may be unavailable (private mode); the choice then lasts for this page.
    }
  }
  applyTranslations();
  for (const listener of listeners) listener(current);
}

export function onLanguageChange(listener) {
  listeners.add(listener);
}

export function initLanguage(toggle) {
  let saved = null;
  try {
    saved = localStorage.getItem(LANG_KEY);
  } catch {
    saved = null;
  }
  setLanguage(saved || "zh-CN", { remember: false });
  toggle?.addEventListener("click", () => setLanguage(current === "zh-CN" ? "en" : "zh-CN"));
}
