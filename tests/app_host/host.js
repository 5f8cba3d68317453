// A minimal MCP Apps host for tests/test_app_view.py: renders a view in a sandboxed iframe, as
// hosts do, with the ext-apps AppBridge; tools/call and resources/read go to window.pyCall,
// which the test forwards to aipg-mcp. window.events records what the view asked of the host;
// window.resultHandedAt is when the host handed the view its tool result (epoch milliseconds).
import { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";

window.events = [];

window.startHost = async ({ html, toolInput, toolResult, theme }) => {
  const iframe = document.createElement("iframe");
  iframe.setAttribute("sandbox", "allow-scripts");
  iframe.title = "AI Power Grid job";
  iframe.style.cssText = "width: 760px; height: 300px; border: 0; display: block;";
  iframe.srcdoc = html;
  document.body.append(iframe);

  const bridge = new AppBridge(
    null,
    { name: "test-host", version: "1.0.0" },
    { serverTools: {}, serverResources: {}, downloadFile: {}, openLinks: {} },
    { hostContext: { theme, displayMode: "inline", platform: "web", locale: "en-US" } },
  );
  bridge.oncalltool = (params) => window.pyCall("tools/call", params);
  bridge.onreadresource = (params) => window.pyCall("resources/read", params);
  bridge.ondownloadfile = async (params) => {
    window.events.push({ method: "ui/download-file", params });
    return {};
  };
  bridge.onopenlink = async (params) => {
    window.events.push({ method: "ui/open-link", params });
    return {};
  };
  bridge.onsizechange = ({ height }) => {
    window.events.push({ method: "ui/notifications/size-changed", params: { height } });
    if (height) iframe.style.height = `${Math.ceil(height)}px`;
  };
  bridge.oninitialized = async () => {
    window.events.push({ method: "ui/notifications/initialized" });
    await bridge.sendToolInput({ arguments: toolInput });
    window.resultHandedAt = performance.timeOrigin + performance.now();
    await bridge.sendToolResult(toolResult);
  };
  window.bridge = bridge;
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
};
