import { DEV_KMS_CREDENTIALS, startDevKms } from './server';

/**
 * `pii-vault dev-kms`: serves until SIGTERM/SIGINT. Loaded by the CLI only when asked for, so a
 * production build (tsconfig.build.json), which leaves the dev KMS out, still runs every other command.
 */
export async function runDevKms(options: { port: number; host: string; dataFile?: string }): Promise<number> {
  const kms = await startDevKms(options);
  // A signal handler cannot return a promise to anyone: a failed close is reported and exits non-zero.
  const stop = () =>
    void kms.close().then(
      () => process.exit(0),
      (err: Error) => {
        process.stderr.write(`dev KMS: close failed: ${err.message}\n`);
        process.exit(1);
      },
    );
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.stdout.write(`dev KMS (NOT for production) listening on ${kms.url}\n`);
  process.stdout.write(
    `  credentials: AWS_ACCESS_KEY_ID=${DEV_KMS_CREDENTIALS.accessKeyId} AWS_SECRET_ACCESS_KEY=${DEV_KMS_CREDENTIALS.secretAccessKey}\n`,
  );
  return new Promise<number>(() => undefined);
}
