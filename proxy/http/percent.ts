const ESCAPE_RUN = /(?:%[0-9A-Fa-f]{2})+/g;

/**
 * Percent-decodes every run of well-formed `%XX` escapes on its own, as lenient decoders
 * (query-string parsers, object stores, frameworks) do: a stray `%` or an invalid byte sequence
 * elsewhere does not leave the rest undecoded, as it would with one decodeURIComponent call. A run
 * that is not UTF-8 decodes byte for byte, so an escaped ASCII character is always found.
 */
export function decodePercentRuns(text: string): string {
  if (!text.includes('%')) return text;
  return text.replace(ESCAPE_RUN, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return Buffer.from(run.replaceAll('%', ''), 'hex').toString('latin1');
    }
  });
}
