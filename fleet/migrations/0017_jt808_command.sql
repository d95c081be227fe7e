-- Commands from the platform to a JT/T 808 terminal (issue 18): 0x8103 set terminal
-- parameters (设置终端参数) and 0x8201 query location (位置信息查询). Queued here (by
-- `clearday jt808-command`), sent by the gateway process holding the terminal's
-- connection, answered by the terminal: 0x0001 general response for 0x8103 (result
-- 0 success, 1 failure, 2 message error, 3 not supported), 0x0201 for 0x8201 (the
-- location, kept raw in `reply`). A command sent on a connection that ended before
-- the answer is sent again when the terminal next authenticates.
CREATE TABLE jt808_command (
    command_id  bigserial PRIMARY KEY,
    jt808_phone text NOT NULL CHECK (jt808_phone ~ '^[1-9][0-9]{0,19}$'),
    msg_id      integer NOT NULL CHECK (msg_id IN (33027, 33281)),  -- 0x8103, 0x8201
    body        bytea NOT NULL CHECK (length(body) <= 1023),
    state       text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'answered')),
    queued_at   timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    serial      integer CHECK (serial BETWEEN 0 AND 65535),  -- of the frame that carried it
    answered_at timestamptz,
    result      smallint,
    reply       bytea,
    CHECK ((state = 'queued') = (sent_at IS NULL)),
    CHECK ((state = 'answered') = (answered_at IS NOT NULL))
);
CREATE INDEX jt808_command_open ON jt808_command (jt808_phone, command_id)
    WHERE state <> 'answered';
