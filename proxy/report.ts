// How a library module tells the operator something it survives (a listener error, a reload it could not
// follow, a warning): it calls the Report it was given. Only the entry point (cli/gateway.ts) decides where
// that goes (standard error, `codex-egress: ` before each line); tests collect or drop it.

/** One message for the operator, without the `codex-egress: ` prefix or a final newline. */
export type Report = (msg: string) => void;
