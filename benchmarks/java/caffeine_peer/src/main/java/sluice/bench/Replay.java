// Replays a cache trace of benchmarks/cache_traces (see trace_format.h there for the format)
// through Caffeine at one or more byte budgets, each request charged the trace's bytes, the
// same bytes sluice's replayer charges. Per request: getIfPresent is a hit, else put.
//
// Usage: java -jar target/caffeine-peer.jar TRACE BUDGET_BYTES...
// Prints one line per budget: `caffeine <budget> <hits> <requests>`.
package sluice.bench;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import java.io.BufferedReader;
import java.io.FileReader;
import java.io.IOException;
import java.util.Arrays;

public final class Replay {
  private Replay() {}

  /** The trace: question ids and their charged bytes, in request order. */
  private static final class Trace {
    long[] ids = new long[1 << 16];
    int[] charges = new int[1 << 16];
    int size;

    void add(long id, int charge) {
      if (size == ids.length) {
        ids = Arrays.copyOf(ids, size * 2);
        charges = Arrays.copyOf(charges, size * 2);
      }
      ids[size] = id;
      charges[size] = charge;
      size++;
    }
  }

  static Trace read(String path) throws IOException {
    Trace trace = new Trace();
    try (BufferedReader in = new BufferedReader(new FileReader(path), 1 << 20)) {
      String line;
      int lineNo = 0;
      while ((line = in.readLine()) != null) {
        lineNo++;
        if (line.isEmpty() || line.charAt(0) == '#') continue;
        int space = line.indexOf(' ');
        if (space <= 0) throw new IOException(path + ":" + lineNo + ": expected '<id> <charged bytes>'");
        trace.add(Long.parseLong(line, 0, space, 10),
                  Integer.parseInt(line, space + 1, line.length(), 10));
      }
    }
    return trace;
  }

  static long replay(Trace trace, long budget) {
    // The charge travels with the value, so the weigher reads the trace's bytes. A same-thread
    // executor and a cleanUp() after every put keep eviction in request order (no maintenance
    // left pending on another thread); Caffeine still admits a small random share of candidates
    // on ties (its defence against hash flooding), so a run may differ in the last digit.
    Cache<Long, Integer> cache = Caffeine.newBuilder()
        .maximumWeight(budget)
        .weigher((Long k, Integer charge) -> charge)
        .executor(Runnable::run)
        .build();
    long hits = 0;
    for (int i = 0; i < trace.size; i++) {
      Long key = trace.ids[i];
      if (cache.getIfPresent(key) != null) {
        hits++;
      } else {
        cache.put(key, trace.charges[i]);
        cache.cleanUp();
      }
    }
    return hits;
  }

  public static void main(String[] args) throws IOException {
    if (args.length < 2) {
      System.err.println("usage: Replay TRACE BUDGET_BYTES...");
      System.exit(2);
    }
    Trace trace = read(args[0]);
    for (int i = 1; i < args.length; i++) {
      long budget = Long.parseLong(args[i]);
      System.out.println("caffeine " + budget + " " + replay(trace, budget) + " " + trace.size);
    }
  }
}
