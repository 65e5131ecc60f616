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
    // view-stop.js, scene.js, narration.js
    "stop.back": "← Back to the tour", "stop.missing": "This tour has no stop “{stop}”",
    "scene.section": "3D scene", "scene.loading": "Loading the 3D scene…",
    "scene.error": "The 3D scene could not be shown: {message}",
    "scene.none": "This stop has no 3D scene; its narration tells the story.",
    "scene.label": "3D view of {title}. Drag to turn, pinch or scroll to zoom; on a keyboard, Shift and the arrow keys turn, the arrow keys move.",
    "scene.lowData": "Low-data mode (lighter scene)", "scene.saveData": "Your browser's data saver is on",
    "scene.view360": "360° view", "scene.info": "{tier} detail · {size} · {triangles} triangles",
    "tier.low": "Low", "tier.medium": "Medium", "tier.high": "High", "size.mb": "{mb} MB",
    "ar.view": "View in AR", "ar.exit": "Exit AR", "ar.failed": "AR could not start: {message}",
    "ar.unavailable": "AR is not available in this browser or on this device: use the 3D and 360° views.",
    "geoar.starting": "Placing the scene from your location and compass…",
    "geoar.accuracy": "Placed from your location (±{m} m) and compass.",
    "geoar.note": "Without AR tracking this is only as good as the phone's sensors: typically 5–20 m off horizontally and ±10–20° in heading, so the scene may sit beside its building rather than on it. Point the phone at the landmark and hold it upright.",
    "geoar.nocamera": "No camera: the scene is shown without the camera image.",
    "geoar.nolocation": "No location: the scene cannot be placed; allow location, or use the 3D view.",
    narration: "Narration", "narration.play": "Play narration", "narration.pause": "Pause narration",
    "narration.language": "Narration language", "narration.transcript": "Transcript",
    "narration.none": "This stop has no narration.",
    "narration.missing": "No narration in {lang} for this stop.",
    "narration.unplayable": "This browser cannot play the narration audio; the transcript is below.",
    // view-tour.js, view-event.js
    estimate: "Distance and time are estimates", "status.scheduled": "Scheduled",
    "status.live": "Live now", "status.ended": "Ended", scene: "Scene: {scene}",
    "live.kicked": "You were removed from this event", "live.closed": "Disconnected",
    "narration.tap": "Tap to play the narration", "narration.unavailable": "The narration cannot play here",
    stage: "Light stage",
    "offline.size": "Download for offline use: {mb} MB, {files} files",
    "offline.title": "Offline",
    "codes.link": "QR codes to put up at the stops",
    "codes.title": "Stop QR codes: {tour}",
    "codes.help": "Print this page and put each code up at its stop: scanning it with a phone camera opens the stop, with no location needed.",
    "codes.alt": "QR code that opens {stop}",
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
    // host.js: the host console
    "host.signin": "Sign in", "host.signin.button": "Sign in", "host.signout": "Sign out",
    "host.signin.intro": "Sign in with a host API key to create and run live events.",
    "host.key": "Host API key",
    "host.key.help": "Made with “tourserver keys create --role host” (it starts tsk_). Kept in this tab only, until you close it.",
    "host.key.malformed": "That is not a host API key: keys look like tsk_ followed by 56 letters, digits, _ and -.",
    "host.key.refused": "Sign out and sign in with a valid host key.",
    "host.signedOut": "Signed out",
    "host.create": "Create an event", "host.create.button": "Create event",
    "host.created": "Event “{title}” created",
    "host.ev.title": "Title", "host.ev.tour": "Tour", "host.ev.stop": "Stop (optional)",
    "host.ev.firstStop": "The tour's first stop", "host.ev.start": "Starts",
    "host.ev.end": "Ends (optional)", "host.ev.capacity": "Capacity (optional)",
    "host.ev.capacityOf": "up to {n} people", "host.ev.visibility": "Visibility",
    "host.ev.public": "Public: anyone with the link can join",
    "host.ev.ticketed": "Ticketed: people also need the invite code",
    "host.ev.public.short": "Public", "host.ev.ticketed.short": "Ticketed",
    "host.ev.status": "Status", "host.ev.here": "This browser", "host.ev.mine": "created here",
    "host.ev.titleMissing": "Give the event a title.", "host.ev.startMissing": "Choose when it starts.",
    "host.events": "Events", "host.refresh": "Refresh",
    "host.events.help": "Every event on this server. Those marked “created here” keep their host token in this browser, so you can run them from here.",
    "host.events.none": "No events yet.", "host.back": "← All events",
    "host.share": "Invite people", "host.join": "Join link", "host.copy": "Copy link",
    "host.copyInvite": "Copy code", "host.copied": "Copied",
    "host.copyManual": "Selected: press Ctrl+C (⌘C) to copy.",
    "host.qr": "QR code of the join link {url}", "host.invite": "Invite code",
    "host.invite.help": "People need this code to get a ticket for this event.",
    "host.invite.missing": "The invite code was shown only when the event was created, and it is not in this browser.",
    "host.token": "Host token",
    "host.token.help": "This event was created in another browser. Paste its host token to run it from here.",
    "host.token.use": "Use this token",
    "host.live": "Live", "host.notConnected": "Not connected", "host.connect": "Connect as host",
    "host.disconnect": "Disconnect", "host.clock": "Clock", "host.present": "Here now",
    "host.showState": "Phones show", "host.showNow": "stop {stop} · scene {scene} · lights {color} {pattern}",
    "host.connectFirst": "Connect as host first.", "host.notHost": "This token is not the host's: it cannot run the event.",
    "host.closedCode": "The connection was closed (code {code}).",
    "host.fire": "Fire a cue now", "host.lead": "Lead time (ms)",
    "host.lead.help": "Every phone plays the cue at the same moment: this long from now, on the server clock. Keep it above the slowest phone's delay.",
    "host.lead.invalid": "The lead time must be from 0 to 60000 ms.",
    "host.action.lights": "Lights", "host.action.scene": "Scene", "host.action.narration": "Narration",
    "host.action.stop": "Stop", "host.action.end": "End",
    "host.fire.lights": "Fire lights", "host.fire.scene": "Show scene", "host.fire.narration": "Start narration",
    "host.fire.stop": "Go to stop", "host.fire.end": "Send the end cue…",
    "host.lights.color": "Colour", "host.lights.intensity": "Intensity (0–1)",
    "host.lights.pattern": "Pattern", "host.lights.period": "Period (ms, optional)",
    "host.pattern.steady": "Steady", "host.pattern.pulse": "Pulse", "host.pattern.strobe": "Strobe",
    "host.pattern.chase": "Chase", "host.pattern.off": "Off",
    "host.scene": "Scene", "host.scene.none": "This tour has no scenes.", "host.stop": "Stop",
    "host.narration.lang": "Language", "host.narration.anyLang": "Each phone's own language",
    "host.endCue.help": "Ends the event for everyone when the cue plays.",
    "host.endCue.confirm": "End the event for everyone when this cue plays?",
    "host.cue.sent": "Sent…", "host.cue.stored": "Stored as #{seq}; plays on time",
    "host.cue.played": "#{seq} played", "host.refused": "Refused: {message}",
    "host.tl": "Timeline",
    "host.tl.help": "Offsets are milliseconds from the start. “Run timeline” sends every cue at once, starting 1 s from now; the server schedules them. Once sent, cues are stored and play even if you close this page: there is no stop (ending the event ends the show).",
    "host.tl.cue": "Cue {n}", "host.tl.offset": "Offset (ms)", "host.tl.action": "Action",
    "host.tl.remove": "Remove", "host.tl.removeN": "Remove cue {n}", "host.tl.add": "Add cue",
    "host.tl.run": "Run timeline", "host.tl.empty": "Add a cue first.",
    "host.tl.badOffset": "Cue {n}: the offset must be a number of milliseconds, 0 or more.",
    "host.tl.sent": "{n} cues sent", "host.tl.refused": "Cue {n} refused: {message}",
    "host.tl.summary": "{played} of {total} played, {failed} refused",
    "host.tl.state.sent": "Sent…", "host.tl.state.stored": "#{seq}, plays in {s} s",
    "host.tl.state.played": "#{seq} played", "host.tl.state.error": "Refused: {message}",
    "host.roster": "Attendees", "host.roster.help": "Updated every second while connected.",
    "host.roster.connect": "Connect to see who is here.", "host.roster.none": "Nobody has joined yet.",
    "host.roster.truncated": "Showing {shown} of {n} people.",
    "host.r.name": "Name", "host.r.id": "Id", "host.r.role": "Role", "host.r.delay": "Clock sync (round trip)",
    "host.r.chat": "Chat", "host.r.actions": "Moderation", "host.r.notSynced": "not synced yet",
    "host.r.ms": "{ms} ms", "host.r.muted": "muted", "host.r.canChat": "can chat",
    "host.role.attendee": "attendee", "host.role.viewer": "viewer",
    "host.mute": "Mute", "host.unmute": "Unmute", "host.kick": "Kick",
    "host.muteWho": "Mute {who}", "host.unmuteWho": "Unmute {who}", "host.kickWho": "Kick {who}",
    "host.moderated.mute": "{who} was muted", "host.moderated.unmute": "{who} can chat again",
    "host.moderated.kick": "{who} was removed",
    "host.chat": "Chat", "host.chat.message": "Message everyone", "host.chat.send": "Send",
    "host.end": "End the event", "host.end.button": "End event…",
    "host.end.help": "Everyone gets the end and is disconnected; the log stays for replay.",
    "host.end.confirm": "End “{title}” for everyone now? This cannot be undone.",
    "host.confirm.yes": "End now", "host.confirm.no": "Cancel",
    "host.endedAt": "Ended {time}.", "host.replay": "Replay (new tab)", "host.log": "Event log (JSON lines)",
    "host.replay.help": "The replay plays every cue again in the tourist app's event view, on its original timing.",
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
    // view-stop.js, scene.js, narration.js
    "stop.back": "← 返回路线", "stop.missing": "这条路线没有站点“{stop}”",
    "scene.section": "三维场景", "scene.loading": "正在加载三维场景…",
    "scene.error": "无法显示三维场景：{message}",
    "scene.none": "此站点没有三维场景，请收听讲解。",
    "scene.label": "{title}的三维视图。拖动可旋转，双指捏合或滚轮可缩放；使用键盘时，Shift 加方向键旋转，方向键平移。",
    "scene.lowData": "省流量模式（精简场景）", "scene.saveData": "浏览器已开启省流量",
    "scene.view360": "360° 环视", "scene.info": "{tier}精度 · {size} · {triangles} 个三角形",
    "tier.low": "低", "tier.medium": "中", "tier.high": "高", "size.mb": "{mb} MB",
    "ar.view": "AR 查看", "ar.exit": "退出 AR", "ar.failed": "无法启动 AR：{message}",
    "ar.unavailable": "此浏览器或设备不支持 AR：请使用三维视图和 360° 环视。",
    "geoar.starting": "正在根据你的位置和指南针摆放场景…",
    "geoar.accuracy": "已根据你的位置（±{m} 米）和指南针摆放。",
    "geoar.note": "没有 AR 跟踪时，效果取决于手机传感器：水平误差通常为 5–20 米，朝向误差约 ±10–20°，场景可能出现在建筑旁边而不是正好叠在建筑上。请把手机竖直对准地标。",
    "geoar.nocamera": "没有摄像头：场景将不叠加相机画面显示。",
    "geoar.nolocation": "没有定位：无法摆放场景；请允许定位，或使用三维视图。",
    narration: "讲解", "narration.play": "播放讲解", "narration.pause": "暂停讲解",
    "narration.language": "讲解语言", "narration.transcript": "讲解全文",
    "narration.none": "此站点没有讲解。",
    "narration.missing": "此站点没有{lang}讲解。",
    "narration.unplayable": "此浏览器无法播放讲解音频，全文见下方。",
    // view-tour.js, view-event.js
    estimate: "距离和时间均为估算", "status.scheduled": "未开始",
    "status.live": "正在直播", "status.ended": "已结束", scene: "场景：{scene}",
    "live.kicked": "你已被移出本活动", "live.closed": "连接已断开",
    "narration.tap": "点按播放讲解", "narration.unavailable": "此处无法播放讲解",
    stage: "灯光舞台",
    "offline.size": "离线下载：{mb} MB，{files} 个文件",
    "offline.title": "离线使用",
    "codes.link": "打印各站点的二维码",
    "codes.title": "站点二维码：{tour}",
    "codes.help": "打印本页，把每个二维码贴在对应站点：用手机相机扫码即可打开站点，无需定位。",
    "codes.alt": "打开{stop}的二维码",
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
    // host.js：主持人控制台
    "host.signin": "登录", "host.signin.button": "登录", "host.signout": "退出登录",
    "host.signin.intro": "使用主持人 API 密钥登录，以创建和主持直播活动。",
    "host.key": "主持人 API 密钥",
    "host.key.help": "由“tourserver keys create --role host”生成（以 tsk_ 开头）。只保存在此标签页中，关闭即清除。",
    "host.key.malformed": "这不是主持人 API 密钥：密钥以 tsk_ 开头，后接 56 个字母、数字、_ 或 -。",
    "host.key.refused": "请退出登录，并使用有效的主持人密钥重新登录。",
    "host.signedOut": "已退出登录",
    "host.create": "创建活动", "host.create.button": "创建活动",
    "host.created": "已创建活动“{title}”",
    "host.ev.title": "标题", "host.ev.tour": "路线", "host.ev.stop": "站点（可选）",
    "host.ev.firstStop": "路线的第一站", "host.ev.start": "开始时间",
    "host.ev.end": "结束时间（可选）", "host.ev.capacity": "人数上限（可选）",
    "host.ev.capacityOf": "最多 {n} 人", "host.ev.visibility": "公开范围",
    "host.ev.public": "公开：任何拿到链接的人都能加入",
    "host.ev.ticketed": "凭票：还需要邀请码",
    "host.ev.public.short": "公开", "host.ev.ticketed.short": "凭票",
    "host.ev.status": "状态", "host.ev.here": "本浏览器", "host.ev.mine": "在此创建",
    "host.ev.titleMissing": "请填写活动标题。", "host.ev.startMissing": "请选择开始时间。",
    "host.events": "活动", "host.refresh": "刷新",
    "host.events.help": "此服务器上的所有活动。标有“在此创建”的活动，其主持人令牌保存在本浏览器中，可以在这里主持。",
    "host.events.none": "还没有活动。", "host.back": "← 全部活动",
    "host.share": "邀请观众", "host.join": "加入链接", "host.copy": "复制链接",
    "host.copyInvite": "复制邀请码", "host.copied": "已复制",
    "host.copyManual": "已选中：按 Ctrl+C（⌘C）复制。",
    "host.qr": "加入链接 {url} 的二维码", "host.invite": "邀请码",
    "host.invite.help": "观众需要这个邀请码才能领取本活动的票。",
    "host.invite.missing": "邀请码只在创建活动时显示一次，本浏览器中没有保存。",
    "host.token": "主持人令牌",
    "host.token.help": "此活动是在其他浏览器中创建的。粘贴它的主持人令牌即可在这里主持。",
    "host.token.use": "使用此令牌",
    "host.live": "直播", "host.notConnected": "未连接", "host.connect": "以主持人身份连接",
    "host.disconnect": "断开连接", "host.clock": "时钟", "host.present": "在场",
    "host.showState": "手机当前显示", "host.showNow": "站点 {stop} · 场景 {scene} · 灯光 {color} {pattern}",
    "host.connectFirst": "请先以主持人身份连接。", "host.notHost": "这不是主持人令牌，无法主持活动。",
    "host.closedCode": "连接已关闭（代码 {code}）。",
    "host.fire": "立即发送指令", "host.lead": "提前量（毫秒）",
    "host.lead.help": "所有手机在同一时刻执行指令：按服务器时钟，从现在起经过这段时间后。请大于最慢手机的延迟。",
    "host.lead.invalid": "提前量必须在 0 到 60000 毫秒之间。",
    "host.action.lights": "灯光", "host.action.scene": "场景", "host.action.narration": "讲解",
    "host.action.stop": "站点", "host.action.end": "结束",
    "host.fire.lights": "发送灯光", "host.fire.scene": "显示场景", "host.fire.narration": "开始讲解",
    "host.fire.stop": "前往站点", "host.fire.end": "发送结束指令…",
    "host.lights.color": "颜色", "host.lights.intensity": "亮度（0–1）",
    "host.lights.pattern": "效果", "host.lights.period": "周期（毫秒，可选）",
    "host.pattern.steady": "常亮", "host.pattern.pulse": "呼吸", "host.pattern.strobe": "频闪",
    "host.pattern.chase": "追逐", "host.pattern.off": "关闭",
    "host.scene": "场景", "host.scene.none": "这条路线没有场景。", "host.stop": "站点",
    "host.narration.lang": "语言", "host.narration.anyLang": "各手机自己的语言",
    "host.endCue.help": "指令执行时，为所有人结束活动。",
    "host.endCue.confirm": "在此指令执行时为所有人结束活动？",
    "host.cue.sent": "已发送…", "host.cue.stored": "已保存为 #{seq}，将准时执行",
    "host.cue.played": "#{seq} 已执行", "host.refused": "被拒绝：{message}",
    "host.tl": "时间线",
    "host.tl.help": "偏移量为距开始的毫秒数。“运行时间线”会一次发送全部指令，从 1 秒后开始，由服务器排程。指令一经发送即被保存，即使关闭本页也会执行：无法停止（结束活动即结束演出）。",
    "host.tl.cue": "指令 {n}", "host.tl.offset": "偏移（毫秒）", "host.tl.action": "动作",
    "host.tl.remove": "删除", "host.tl.removeN": "删除指令 {n}", "host.tl.add": "添加指令",
    "host.tl.run": "运行时间线", "host.tl.empty": "请先添加指令。",
    "host.tl.badOffset": "指令 {n}：偏移量必须是不小于 0 的毫秒数。",
    "host.tl.sent": "已发送 {n} 条指令", "host.tl.refused": "指令 {n} 被拒绝：{message}",
    "host.tl.summary": "已执行 {played}/{total}，被拒绝 {failed}",
    "host.tl.state.sent": "已发送…", "host.tl.state.stored": "#{seq}，{s} 秒后执行",
    "host.tl.state.played": "#{seq} 已执行", "host.tl.state.error": "被拒绝：{message}",
    "host.roster": "观众", "host.roster.help": "连接期间每秒更新。",
    "host.roster.connect": "连接后可查看在场的人。", "host.roster.none": "还没有人加入。",
    "host.roster.truncated": "显示 {n} 人中的 {shown} 人。",
    "host.r.name": "名字", "host.r.id": "ID", "host.r.role": "角色", "host.r.delay": "时钟同步（往返）",
    "host.r.chat": "聊天", "host.r.actions": "管理", "host.r.notSynced": "尚未同步",
    "host.r.ms": "{ms} 毫秒", "host.r.muted": "已禁言", "host.r.canChat": "可聊天",
    "host.role.attendee": "观众", "host.role.viewer": "旁观者",
    "host.mute": "禁言", "host.unmute": "解除禁言", "host.kick": "移出",
    "host.muteWho": "禁言 {who}", "host.unmuteWho": "解除 {who} 的禁言", "host.kickWho": "移出 {who}",
    "host.moderated.mute": "{who} 已被禁言", "host.moderated.unmute": "{who} 可以再次聊天",
    "host.moderated.kick": "{who} 已被移出",
    "host.chat": "聊天", "host.chat.message": "发给所有人的消息", "host.chat.send": "发送",
    "host.end": "结束活动", "host.end.button": "结束活动…",
    "host.end.help": "所有人都会收到结束通知并断开连接；日志会保留以供回放。",
    "host.end.confirm": "现在为所有人结束“{title}”？此操作无法撤销。",
    "host.confirm.yes": "立即结束", "host.confirm.no": "取消",
    "host.endedAt": "结束于 {time}。", "host.replay": "回放（新标签页）", "host.log": "活动日志（JSON 行）",
    "host.replay.help": "回放会在游客应用的活动页面中按原来的节奏重新执行每条指令。",
  },
};

export function uiLanguage() {
  const saved = localStorage.getItem("lang");
  if (saved && STRINGS[saved]) return saved;
  return (navigator.languages || [navigator.language]).some((l) => l?.toLowerCase().startsWith("zh"))
    ? "zh-Hans" : "en";
}

// Localized texts are {lang: text}: the language asked for, its base language, else the
// first given. A plain string (a document already in one language) is itself.
export function pick(texts, lang = uiLanguage()) {
  if (typeof texts === "string") return texts;
  return texts?.[lang] ?? texts?.[lang.split("-")[0]] ?? Object.values(texts || {})[0] ?? "";
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
