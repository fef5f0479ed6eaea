package pricewave.udfs;

import java.time.Instant;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;

/**
 * The latest time before the latest one: over an event-time RANGE window, the time of a user's
 * previous click at an earlier millisecond (null before any), for {@code recency_s}.
 *
 * <p>A ROWS window's "1 PRECEDING" is the row that arrived before, so two clicks of one user at the
 * same millisecond got a recency that depended on arrival order (which changes when the clicks come
 * from two Kafka partitions, keyed by sku). In a RANGE window every click at a millisecond is folded
 * in before any of them is emitted, so all of them get the same value, whatever the order. The
 * accumulator is two longs: the window keeps no rows. The offline frame
 * ({@code pricewave.feature_views.user_session}) computes the same.
 *
 * <pre>{@code
 * CREATE TEMPORARY FUNCTION previous_time AS 'pricewave.udfs.PreviousTime' LANGUAGE JAVA;
 * SELECT previous_time(event_time) OVER (PARTITION BY user_key ORDER BY event_time
 *   RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM clicks;
 * }</pre>
 */
@FunctionHint(input = @DataTypeHint("TIMESTAMP_LTZ(3)"), output = @DataTypeHint("TIMESTAMP_LTZ(3)"))
public final class PreviousTime extends AggregateFunction<Instant, PreviousTime.Times> {

    /** The latest time folded in and the latest one before it, in epoch ms (null: none yet). */
    public static final class Times {
        public Long latest = null;
        public Long before = null;
    }

    @Override
    public Times createAccumulator() {
        return new Times();
    }

    /** Folds in one time; a null time is skipped, a repeat of the latest changes nothing. */
    public void accumulate(Times acc, Instant time) {
        if (time == null) {
            return;
        }
        long millis = time.toEpochMilli();
        if (acc.latest == null || millis > acc.latest) {
            acc.before = acc.latest;
            acc.latest = millis;
        } else if (millis < acc.latest && (acc.before == null || millis > acc.before)) {
            acc.before = millis;  // an older time (not in an event-time window, which is in order)
        }
    }

    @Override
    public Instant getValue(Times acc) {
        return acc.before == null ? null : Instant.ofEpochMilli(acc.before);
    }
}
