// Builds aipg_mcp/server/view/job.html: job.js bundled with the MCP Apps view SDK and inlined,
// with job.css, into job.template.html, so the file loads nothing from anywhere.
// Usage: node view/build.mjs [output]   (needs `npm ci --prefix tests/js`; the package ships
// the built file, so installing aipg-mcp needs no Node.js).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const modules = join(root, "tests", "js", "node_modules");
const esbuild = createRequire(join(root, "tests", "js", "package.json"))("esbuild");

// zod exposes every language of its error messages as a namespace a namespace import keeps
// whole; the view shows no zod message, so only its English default (imported on its own) stays.
const englishOnly = {
  name: "zod-english-only",
  setup(build) {
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      args.importer.includes("/node_modules/zod/") ? { path: "locales", namespace: "empty" } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: "empty" }, () => ({ contents: "export {};" }));
  },
};

const bundle = await esbuild.build({
  entryPoints: [join(here, "job.js")],
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "es2022",
  minify: true,
  legalComments: "none",
  nodePaths: [modules],
  plugins: [englishOnly],
  write: false,
});
const script = bundle.outputFiles[0].text.replaceAll("</script", "<\\/script");
const style = readFileSync(join(here, "job.css"), "utf8");
const html = readFileSync(join(here, "job.template.html"), "utf8")
  .replace("/*STYLE*/", () => style)
  .replace("/*SCRIPT*/", () => script.trimEnd());
const output = process.argv[2] || join(root, "aipg_mcp", "server", "view", "job.html");
writeFileSync(output, html);
console.log(`${output}: ${html.length} bytes`);
