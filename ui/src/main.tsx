import "./styles.css";
import { render } from "preact";
import { App } from "./app.tsx";
import { applyTheme, readConfig, readParams } from "./config.ts";

const config = readConfig();
const params = readParams();
applyTheme(params);
const root = document.getElementById("app");
if (root) render(<App config={config} params={params} />, root);
