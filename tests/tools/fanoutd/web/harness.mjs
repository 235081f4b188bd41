// The page test's plumbing (page_test.mjs): its arguments, a missing peer (skipped outside CI,
// failed under CI), the programs it starts (fanoutd, fanout-sink) and their stopping, and the
// named steps it prints. Nothing here waits on a clock except the 30 s SIGKILL fallback.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// Exit 77 (ctest: skipped) when the browser or Playwright is missing, except under CI (CI set),
// where a missing peer is a failure.
export function missing(what) {
  console.log(`${process.env.CI ? "FAILED" : "SKIPPED"}: ${what}`);
  process.exit(process.env.CI ? 1 : 77);
}

// --name value pairs.
export const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));

export const tmp = mkdtempSync(join(tmpdir(), "fanoutd-page-"));
const children = [];

export function cleanup() {
  for (const { child } of children) if (child.exitCode === null) child.kill("SIGKILL");
  if (!process.env.FANOUTD_KEEP_TMP) rmSync(tmp, { recursive: true, force: true });
}

// Stops every child still running with SIGTERM (SIGKILL after 30 s), so that a sanitized build
// writes its reports (LeakSanitizer runs at exit); returns the sanitizer reports found in the
// stderr of every child, running or not.
const SANITIZER_MARKERS = ["ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                           "WARNING: ThreadSanitizer"];
export async function stopChildren() {
  await Promise.all(children.map(({ child }) => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("exit", () => { clearTimeout(timer); resolve(); });
    child.kill("SIGTERM");
  })));
  return children.filter(({ stderr }) => SANITIZER_MARKERS.some((m) => stderr().includes(m)))
    .map(({ name, stderr }) => `${name}: sanitizer report in stderr:\n${stderr()}`);
}

// Spawns a program that prints "listening on 127.0.0.1:PORT" first; resolves with the port.
export function listen(cmd, argv, name) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    children.push({ child, name, stderr: () => err });
    child.stdout.on("data", (d) => {
      out += d;
      const m = /^listening on 127\.0\.0\.1:(\d+)/m.exec(out);
      if (m) resolve({ child, port: Number(m[1]), stderr: () => err });
    });
    child.stderr.on("data", (d) => { err += d; });
    child.on("exit", (code) => reject(new Error(`${name} exited ${code}: ${err}`)));
  });
}

// Runs a command of `program` (fanoutd apikey ...); answers the last line of its output.
export function cli(program, ...argv) {
  return execFileSync(program, argv, { encoding: "utf8" }).trim().split("\n").pop();
}

export const steps = [];
export async function step(name, fn) {
  process.stdout.write(`- ${name} ... `);
  await fn();
  steps.push(name);
  console.log("ok");
}
