// Interface strings in en and zh-Hans, following the browser's language (switchable), and
// the theme and text-size settings, kept in localStorage.
const STRINGS = {
  en: {
    brand: "Night tours", skip: "Skip to content", loading: "Loading…", language: "Language",
    "theme.light": "Light theme", "theme.dark": "Dark theme", "text.large": "Larger text",
    "text.normal": "Normal text", "host.title": "Host console",
    tours: "Tours", stops: "Stops", "lit.now": "Lit now", "lit.at": "Lights on at {time}",
    "lit.none": "No lighting schedule", events: "Live events", "events.none": "No live events planned",
    join: "Join", distance: "{km} km", duration: "about {min} min", route: "Route of the tour",
    back: "All tours", error: "Something went wrong: {message}",
    present: "{n} here", "live.connecting": "Connecting…", "live.connected": "Connected",
    "live.reconnecting": "Reconnecting…", "live.ended": "The event has ended",
    "live.clock": "Clock synced (±{ms} ms)", react: "React", "stop.current": "Now at: {stop}",
    "cue.lights": "Lights: {color}", "cue.narration": "Narration starts",
    "offline.size": "Download for offline use: {mb} MB, {files} files",
    "offline.download": "Download tour", "offline.progress": "Downloading… {pct} %",
    "offline.ready": "Downloaded: this tour works without a signal",
    "near.link": "Near me", "near.title": "Stops near me",
    "near.privacy": "Your position stays on this phone: the app asks the server only for a coarse area (about 0.7 km²) and works out which stops you are at by itself.",
    "near.start": "Find stops near me", "near.asking": "Asking for your location…",
    "near.denied": "No location permission: pick a stop from a tour, or scan a stop's QR code.",
    "near.unavailable": "This browser cannot tell its location: pick a stop from a tour.",
    "near.accuracy": "Location accurate to about {m} m", "near.distance": "{m} m away",
    "near.inside": "you are here", "near.arrived": "You are at {stop}: open it",
    "near.manual": "Or choose a stop yourself:",
  },
  "zh-Hans": {
    brand: "夜游", skip: "跳到正文", loading: "加载中…", language: "语言",
    "theme.light": "浅色主题", "theme.dark": "深色主题", "text.large": "大字", "text.normal": "正常字号",
    "host.title": "主持人控制台",
    tours: "游览路线", stops: "站点", "lit.now": "正在亮灯", "lit.at": "{time} 亮灯",
    "lit.none": "没有亮灯时间表", events: "直播活动", "events.none": "暂无直播活动",
    join: "加入", distance: "{km} 公里", duration: "约 {min} 分钟", route: "游览路线图",
    back: "全部路线", error: "出错了：{message}",
    present: "{n} 人在场", "live.connecting": "连接中…", "live.connected": "已连接",
    "live.reconnecting": "重新连接中…", "live.ended": "活动已结束",
    "live.clock": "时钟已同步（±{ms} 毫秒）", react: "互动", "stop.current": "当前：{stop}",
    "cue.lights": "灯光：{color}", "cue.narration": "讲解开始",
    "offline.size": "离线下载：{mb} MB，{files} 个文件",
    "offline.download": "下载路线", "offline.progress": "下载中… {pct}%",
    "offline.ready": "已下载：没有信号也能游览",
    "near.link": "附近", "near.title": "我附近的站点",
    "near.privacy": "你的位置只留在这部手机上：应用只向服务器请求一个大致区域（约 0.7 平方公里），由手机自己判断你在哪个站点。",
    "near.start": "查找附近站点", "near.asking": "正在获取位置…",
    "near.denied": "没有定位权限：请从路线中选择站点，或扫描站点二维码。",
    "near.unavailable": "此浏览器无法定位：请从路线中选择站点。",
    "near.accuracy": "定位精度约 {m} 米", "near.distance": "距离 {m} 米",
    "near.inside": "你在这里", "near.arrived": "你已到达{stop}：点此打开",
    "near.manual": "或者自己选择站点：",
  },
};

export function uiLanguage() {
  const saved = localStorage.getItem("lang");
  if (saved && STRINGS[saved]) return saved;
  return (navigator.languages || [navigator.language]).some((l) => l?.toLowerCase().startsWith("zh"))
    ? "zh-Hans" : "en";
}

export function t(key, vars = {}) {
  const table = STRINGS[uiLanguage()] || STRINGS.en;
  const text = table[key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));
}

export function applyStrings(root = document) {
  document.documentElement.lang = uiLanguage();
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

export function announce(text) {
  const el = document.getElementById("announcer");
  if (el) el.textContent = text;
}

// The settings bar: theme, text size, language. `onChange` re-renders the current view.
export function setupSettings(onChange) {
  const html = document.documentElement;
  const theme = document.getElementById("theme-toggle");
  const text = document.getElementById("text-toggle");
  const lang = document.getElementById("lang-select");
  const apply = () => {
    const light = localStorage.getItem("theme") === "light";
    html.dataset.theme = light ? "light" : "dark";
    const large = localStorage.getItem("text") === "large";
    html.dataset.text = large ? "large" : "normal";
    applyStrings();
    if (theme) {
      theme.setAttribute("aria-pressed", String(light));
      theme.textContent = t(light ? "theme.dark" : "theme.light");
    }
    if (text) {
      text.setAttribute("aria-pressed", String(large));
      text.textContent = t(large ? "text.normal" : "text.large");
    }
    if (lang) lang.value = uiLanguage();
  };
  theme?.addEventListener("click", () => {
    localStorage.setItem("theme", localStorage.getItem("theme") === "light" ? "dark" : "light");
    apply();
  });
  text?.addEventListener("click", () => {
    localStorage.setItem("text", localStorage.getItem("text") === "large" ? "normal" : "large");
    apply();
  });
  lang?.addEventListener("change", () => {
    localStorage.setItem("lang", lang.value);
    apply();
    onChange?.();
  });
  apply();
}
