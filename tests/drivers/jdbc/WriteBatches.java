import java.sql.*;

/**
 * Writes through JDBC as applications send them: executeBatch with
 * autocommit on and off, a batch with a failing row (the whole batch must
 * roll back), a transaction rolled back, batches of UPDATE and DELETE by
 * key. Run by tests/drivers.rs against shardproxy and against one plain
 * Postgres with the same arguments; the test compares the tables.
 *
 * Args: JDBC URL, first id. Exits 1 (with the reason on stderr) when an
 * outcome differs from what Postgres does.
 */
public class WriteBatches {
    static void check(boolean ok, String what) {
        if (!ok) {
            System.err.println("FAILED: " + what);
            System.exit(1);
        }
    }

    static long count(Connection c, long lo, long hi) throws SQLException {
        try (PreparedStatement q = c.prepareStatement(
                "select count(*) from jdbc_rows where id >= ? and id < ?")) {
            q.setLong(1, lo);
            q.setLong(2, hi);
            try (ResultSet r = q.executeQuery()) {
                r.next();
                return r.getLong(1);
            }
        }
    }

    static void add(PreparedStatement ps, long from, long to, String v) throws SQLException {
        for (long id = from; id < to; id++) {
            ps.setLong(1, id);
            ps.setInt(2, (int) (id % 7));
            ps.setString(3, v);
            ps.addBatch();
        }
    }

    static void batch(PreparedStatement ps, long from, long to, String v) throws SQLException {
        add(ps, from, to, v);
        int[] done = ps.executeBatch();
        check(done.length == to - from, "batch answered " + done.length + " rows");
        for (int n : done) {
            check(n == 1 || n == Statement.SUCCESS_NO_INFO, "batch row count " + n);
        }
    }

    /** A batch whose last row repeats id `dup`: it must fail as a whole. */
    static void failingBatch(PreparedStatement ps, long from, long to, long dup) throws SQLException {
        add(ps, from, to, "f");
        add(ps, dup, dup + 1, "dup");
        try {
            ps.executeBatch();
            check(false, "a batch with a duplicate key succeeded");
        } catch (BatchUpdateException e) {
            check("23505".equals(e.getSQLState()) || "23505".equals(e.getNextException().getSQLState()),
                    "batch failed with " + e.getSQLState() + ": " + e.getMessage());
        }
    }

    public static void main(String[] a) throws Exception {
        String url = a[0];
        long base = Long.parseLong(a[1]);
        try (Connection c = DriverManager.getConnection(url);
                PreparedStatement ins = c.prepareStatement(
                        "insert into jdbc_rows (id, grp, v) values (?, ?, ?)")) {
            c.setAutoCommit(true);
            for (int b = 0; b < 3; b++) {
                batch(ins, base + b * 40, base + b * 40 + 40, "auto");
            }
            failingBatch(ins, base + 500, base + 515, base);
            check(count(c, base + 500, base + 515) == 0, "a failed batch left rows");

            c.setAutoCommit(false);
            batch(ins, base + 200, base + 225, "tx");
            batch(ins, base + 225, base + 250, "tx");
            c.commit();
            batch(ins, base + 300, base + 310, "rolled back");
            failingBatch(ins, base + 310, base + 320, base + 1);
            c.rollback();
            check(count(c, base + 300, base + 320) == 0, "a failed transaction left rows");
            c.commit();
            batch(ins, base + 400, base + 410, "rolled back");
            c.rollback();
            check(count(c, base + 400, base + 410) == 0, "a rolled back transaction left rows");
            c.commit();

            try (PreparedStatement up = c.prepareStatement("update jdbc_rows set v = ? where id = ?");
                    PreparedStatement del = c.prepareStatement("delete from jdbc_rows where id = ?")) {
                for (long id = base + 200; id < base + 250; id += 5) {
                    up.setString(1, "updated");
                    up.setLong(2, id);
                    up.addBatch();
                }
                for (int n : up.executeBatch()) {
                    check(n == 1 || n == Statement.SUCCESS_NO_INFO, "update count " + n);
                }
                for (long id = base; id < base + 40; id += 3) {
                    del.setLong(1, id);
                    del.addBatch();
                }
                del.executeBatch();
                c.commit();
            }
            c.setAutoCommit(true);
            System.out.println("rows " + count(c, base, base + 1000));
        }
    }
}
