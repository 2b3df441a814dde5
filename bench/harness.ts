/**
 * The test suite's OpenSSH harness (private sshd, key generation), loaded for the benchmarks.
 *
 * test/support/peers.ts imports `describe`/`it` from vitest, which throws when loaded outside the
 * test runner. The benchmarks only need the harness, so `vitest` resolves to inert stand-ins
 * here, and the harness is imported dynamically once that hook is registered.
 */
import { register } from "node:module"

register(
  `data:text/javascript,${encodeURIComponent(
    `export async function resolve(specifier, context, next) {
      if (specifier === "vitest") return { url: "data:text/javascript,export const describe = () => {}; export const it = () => {}", shortCircuit: true }
      return next(specifier, context)
    }`
  )}`
)

export const { generateKey } = await import("../test/support/openssh.js")
export const { requirePeer } = await import("../test/support/peers.js")
export const { startSshd } = await import("../test/support/sshd.js")

/**
 * Arguments for OpenSSH's `ssh` running `command` on 127.0.0.1:`port` as `user` with one key and
 * no configuration, known_hosts or agent of the machine's; `options` adds or overrides `-o`s.
 */
export function opensshArgs(
  target: { readonly port: number; readonly user: string; readonly keyPath: string },
  command: string,
  options: Readonly<Record<string, string>> = {}
): Array<string> {
  const all: Record<string, string> = {
    BatchMode: "yes",
    StrictHostKeyChecking: "no",
    UserKnownHostsFile: "/dev/null",
    GlobalKnownHostsFile: "/dev/null",
    LogLevel: "ERROR",
    IdentitiesOnly: "yes",
    IdentityAgent: "none",
    ...options
  }
  return [
    "-F",
    "/dev/null",
    "-p",
    String(target.port),
    "-l",
    target.user,
    "-i",
    target.keyPath,
    ...Object.entries(all).flatMap(([k, v]) => ["-o", `${k}=${v}`]),
    "127.0.0.1",
    command
  ]
}
