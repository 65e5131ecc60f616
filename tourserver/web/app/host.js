// The host console (being built, issue 15).
import { applyStrings, setupSettings } from "./i18n.js";

setupSettings(() => {});
document.getElementById("main").innerHTML = `<p role="status">The host console is being built.</p>`;
applyStrings();
