import { ChildProcess, spawn, spawnSync, SpawnSyncReturns } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const CLI = join(__dirname, '..', '..', '..', 'bin', 'pii-vault.js');

/** Runs the real CLI to completion (with `input` on its standard input). */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000, input });
}

export type StarterKeys = Record<'billing' | 'gateway' | 'support' | 'security', string>;

/** `pii-vault init --json` on a fresh dir, then the given settings merged into its config.json. */
export function initVault(dir: string, settings: Record<string, unknown> = {}): StarterKeys {
  const init = cli(['init', '--data-dir', dir, '--json']);
  if (init.status !== 0) throw new Error(`init failed: ${init.stderr}`);
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...settings }, null, 2));
  return JSON.parse(init.stdout).apiKeys;
}

export interface ServerProcess {
  url: string;
  proc: ChildProcess;
  output(): string;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `pii-vault serve` (or `start`) as a real process and waits for its `listening on` line. */
export function serve(
  dataDir: string,
  { command = 'serve', env = {}, args = [] }: { command?: string; env?: NodeJS.ProcessEnv; args?: string[] } = {},
): Promise<ServerProcess> {
  const proc = spawn(process.execPath, [CLI, command, '--data-dir', dataDir, '--port', '0', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`server did not start:\n${out}`));
    }, 20_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const match = /^listening on (https?:\/\/\S+)$/m.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve({
          url: match[1],
          proc,
          output: () => out,
          stop: async (signal = 'SIGTERM') => {
            if (proc.exitCode === null) proc.kill(signal);
            return exited;
          },
        });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${out}`));
    });
  });
}
