import TollgateRESP

/// The Lua scripts the Redis store runs. Each runs atomically on the Redis server, so the
/// check and the take of a quota are one step however many Tollgate instances share it.
enum RedisScripts {
    /// Admission: reads the time with `TIME` (one clock for every instance), checks that the
    /// key's record is the one the instance decided on, derives each counter's current UTC
    /// window (calendar months included), checks every counter against its quota and, only
    /// if all have room, takes one unit from each; counts the request per API as admitted or
    /// refused. A counter whose stored window is later than the current one (the server
    /// clock stepped back) keeps counting: a step back never resets a quota.
    ///
    /// The record check makes the store, not the instance's cache, the judge of every
    /// admission: a record Redis no longer holds (a restart without persistence, a
    /// `FLUSHALL`) takes nothing and answers -1, one changed since the instance read it (an
    /// edit or revocation made elsewhere, a snapshot restored) takes nothing and answers -2.
    /// It reads one field of a hash in the key's own slot (`{ID}`), so it stays one atomic
    /// step on one node of a cluster.
    ///
    /// KEYS: the key's record, its per-API hash, then one hash per counter (fields `w`:
    ///   window start in seconds, `n`: count).
    /// ARGV: api, mode (`take` or `peek` for a request out of scope), the record's `version`
    ///   the instance holds, then per counter its period and its quota.
    /// Returns: { now in ms, 1 if admitted, 0 if refused, -1 no such record, -2 another
    ///   version; the key's usage epoch (field `epoch` of the per-API hash; 0 unless
    ///   admitted), then (unless -1 or -2) each counter's count before this request }.
    static let admit = RESPScript(
        windowFunctions + """
            local t = redis.call('TIME')
            local secs = tonumber(t[1])
            local nowms = secs * 1000 + math.floor(tonumber(t[2]) / 1000)
            local record = redis.call('HMGET', KEYS[1], 'id', 'version')
            if not record[1] then return { nowms, -1, 0 } end
            if (record[2] or '0') ~= ARGV[3] then return { nowms, -2, 0 } end
            local take = ARGV[2] == 'take'
            local n = #KEYS - 2

            local used, starts, ends = {}, {}, {}
            local admit = take
            local epoch = 0
            for i = 1, n do
              local period = ARGV[2 + 2 * i]
              local quota = tonumber(ARGV[3 + 2 * i])
              local start, stop = window(period, secs)
              local stored = redis.call('HMGET', KEYS[2 + i], 'w', 'n')
              local w, c = tonumber(stored[1]), tonumber(stored[2]) or 0
              local u = 0
              if w and w >= start then
                u = c
                if w > start then start = w end
              end
              used[i], starts[i], ends[i] = u, start, stop
              if u >= quota then admit = false end
            end

            if admit then
              for i = 1, n do
                redis.call('HSET', KEYS[2 + i], 'w', starts[i], 'n', used[i] + 1)
                if ends[i] then redis.call('PEXPIREAT', KEYS[2 + i], ends[i] * 1000 + 60000) end
              end
              redis.call('HINCRBY', KEYS[2], 'admitted:' .. ARGV[1], 1)
              epoch = tonumber(redis.call('HGET', KEYS[2], 'epoch')) or 0
            elseif take then
              redis.call('HINCRBY', KEYS[2], 'quota_exceeded:' .. ARGV[1], 1)
            else
              redis.call('HINCRBY', KEYS[2], 'scope_denied:' .. ARGV[1], 1)
            end

            local reply = { nowms, admit and 1 or 0, epoch }
            for i = 1, n do reply[3 + i] = used[i] end
            return reply
            """
    )

    /// Give-back: returns an admitted request's units (see `KeyStore.giveBack`), and the
    /// unit of an admission whose reply came too late (its request was answered `503`).
    /// Nothing unless the key's usage epoch is still the one the admission read (a reset or
    /// an edit of the key moves it on); then one from the per-API admitted count and one
    /// from each counter still in the window the admission took its unit from, never below
    /// zero. A counter whose window has rolled over, or whose hash expired, gets nothing.
    ///
    /// KEYS: as for the admission (the record, which this script does not read, the per-API
    ///   hash, then one hash per counter).
    /// ARGV: api, the epoch the admission returned, then per counter the start of the window
    ///   its unit was taken in (from the admission's own `TIME`, not the give-back's).
    /// Returns: 1 if anything was given back, else 0.
    static let giveBack = RESPScript(
        """
        if (tonumber(redis.call('HGET', KEYS[2], 'epoch')) or 0) ~= tonumber(ARGV[2]) then return 0 end
        local given = 0
        local field = 'admitted:' .. ARGV[1]
        if (tonumber(redis.call('HGET', KEYS[2], field)) or 0) > 0 then
          redis.call('HINCRBY', KEYS[2], field, -1)
          given = 1
        end
        for i = 3, #KEYS do
          local stored = redis.call('HMGET', KEYS[i], 'w', 'n')
          local w, c = tonumber(stored[1]), tonumber(stored[2]) or 0
          if w and w == tonumber(ARGV[i]) and c > 0 then
            redis.call('HSET', KEYS[i], 'n', c - 1)
            given = 1
          end
        end
        return given
        """
    )

    /// Usage reset: deletes the key's counters and per-API counts and moves its usage epoch
    /// on (kept in the per-API hash), so that a give-back of a unit taken before the reset
    /// gives nothing to the new counts.
    /// KEYS: the per-API hash, then every counter hash.
    static let resetUsage = RESPScript(
        """
        local epoch = (tonumber(redis.call('HGET', KEYS[1], 'epoch')) or 0) + 1
        redis.call('DEL', unpack(KEYS))
        redis.call('HSET', KEYS[1], 'epoch', epoch)
        return epoch
        """
    )

    /// The UTC window of a period containing an instant, as ``QuotaPeriod/window(containing:)``
    /// computes it in Swift (the days-from-civil arithmetic for months); tested against it.
    static let windowFunctions = """
        local function daysFromCivil(y, m, d)
          if m <= 2 then y = y - 1 end
          local era = math.floor(y / 400)
          local yoe = y - era * 400
          local mp = (m > 2) and (m - 3) or (m + 9)
          local doy = math.floor((153 * mp + 2) / 5) + d - 1
          local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
          return era * 146097 + doe - 719468
        end

        local function civilFromDays(z)
          z = z + 719468
          local era = math.floor(z / 146097)
          local doe = z - era * 146097
          local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
          local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
          local mp = math.floor((5 * doy + 2) / 153)
          local m = (mp < 10) and (mp + 3) or (mp - 9)
          local y = yoe + era * 400
          if m <= 2 then y = y + 1 end
          return y, m
        end

        local lengths = { second = 1, minute = 60, hour = 3600, day = 86400 }
        local function window(period, secs)
          if period == 'total' then return 0, nil end
          local length = lengths[period]
          if length then
            local start = math.floor(secs / length) * length
            return start, start + length
          end
          local y, m = civilFromDays(math.floor(secs / 86400))
          local ny, nm = y, m + 1
          if nm == 13 then ny, nm = y + 1, 1 end
          return daysFromCivil(y, m, 1) * 86400, daysFromCivil(ny, nm, 1) * 86400
        end

        """

    /// Creates a key unless its digest or id is taken, in one step.
    /// KEYS: digest index, record, id index, change stream. ARGV: id, then record fields.
    static let create = RESPScript(
        """
        if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
        redis.call('HSET', KEYS[2], 'id', ARGV[1], 'digest', ARGV[2], 'name', ARGV[3], 'scopes', ARGV[4],
          'limits', ARGV[5], 'created_at', ARGV[6], 'expires_at', ARGV[7], 'revoked_at', ARGV[8])
        redis.call('SET', KEYS[1], ARGV[1])
        redis.call('ZADD', KEYS[3], 0, ARGV[1])
        redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1])
        return 1
        """
    )

    /// Changes a key's name, scopes, limits, expiry and revocation (never its digest); a
    /// revocation held stays when ARGV[7] is '1'. Moves the usage epoch on, since the limits
    /// (and so the counters a request takes from) may change: a give-back of a unit taken
    /// before gives nothing.
    /// KEYS: record, change stream, per-API hash. ARGV: id, name, scopes, limits, expires_at,
    ///   revoked_at, keep.
    static let update = RESPScript(
        """
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        local revoked = ARGV[6]
        if ARGV[7] == '1' then
          local held = redis.call('HGET', KEYS[1], 'revoked_at')
          if held and held ~= '' then revoked = held end
        end
        redis.call('HSET', KEYS[1], 'name', ARGV[2], 'scopes', ARGV[3], 'limits', ARGV[4],
          'expires_at', ARGV[5], 'revoked_at', revoked)
        redis.call('HINCRBY', KEYS[1], 'version', 1)
        redis.call('HINCRBY', KEYS[3], 'epoch', 1)
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1])
        return 1
        """
    )

    /// Sets only the record fields given, in one step, so that edits of other fields racing
    /// from other instances are kept (never the digests or the revocation: an edit never
    /// brings a key back). Moves the usage epoch on and announces the change, as `update`.
    /// The record's `version` (absent: 0) moves on; an expected version other than '' must
    /// be the stored one.
    /// KEYS: record, change stream, per-API hash. ARGV: id, expected version or '', then
    ///   field and value pairs.
    /// Returns: the record as stored after the edit (its field-value pairs), 0 if no such
    ///   key, -1 if the version is not the expected one.
    static let edit = RESPScript(
        """
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        if ARGV[2] ~= '' and (redis.call('HGET', KEYS[1], 'version') or '0') ~= ARGV[2] then return -1 end
        if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
        redis.call('HINCRBY', KEYS[1], 'version', 1)
        redis.call('HINCRBY', KEYS[3], 'epoch', 1)
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1])
        return redis.call('HGETALL', KEYS[1])
        """
    )

    /// Rotates a key: the new digest's index points at the key, the current digest becomes
    /// the previous one (its index kept, so the old secret is found and refused as revoked
    /// after the overlap), and the digest rotated away before loses its index. The caller
    /// read that previous digest; if another rotation has moved it since, nothing changes.
    /// KEYS: record, new digest index, the index of the previous digest the caller read (any
    ///   name if none), change stream.
    /// ARGV: id, new digest (hex), previous_until in ms, the previous digest read ('' if none).
    /// Returns: 1 rotated, 0 no such key, -1 the new digest is taken, -2 raced, try again.
    static let rotate = RESPScript(
        """
        local current = redis.call('HMGET', KEYS[1], 'digest', 'previous_digest')
        if not current[1] then return 0 end
        if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
        if (current[2] or '') ~= ARGV[4] then return -2 end
        if ARGV[4] ~= '' then redis.call('DEL', KEYS[3]) end
        redis.call('SET', KEYS[2], ARGV[1])
        redis.call('HSET', KEYS[1], 'digest', ARGV[2], 'previous_digest', current[1], 'previous_until', ARGV[3])
        redis.call('HINCRBY', KEYS[1], 'version', 1)
        redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1])
        return 1
        """
    )

    /// Revokes a key unless it is revoked already (the first time stays); an expected
    /// version other than '' must be the stored one (see `edit`).
    /// KEYS: record, change stream. ARGV: id, now in ms, expected version or ''.
    /// Returns: 1 revoked (now or before), 0 no such key, -1 not the expected version.
    static let revoke = RESPScript(
        """
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        if ARGV[3] ~= '' and (redis.call('HGET', KEYS[1], 'version') or '0') ~= ARGV[3] then return -1 end
        if redis.call('HGET', KEYS[1], 'revoked_at') == '' then
          redis.call('HSET', KEYS[1], 'revoked_at', ARGV[2])
          redis.call('HINCRBY', KEYS[1], 'version', 1)
          redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1])
        end
        return 1
        """
    )
}
