import Testing
@testable import WALECore

@Suite struct PrometheusTextTests {
    @Test func rendersGaugesWithEscapedLabels() {
        var p = PrometheusText(labels: [("prefix", "s3://b/a\"b\\c\nd")])
        p.gauge("wal_e_backup_count", "Complete base backups.", 3)
        p.gauge("wal_e_x_seconds", "A time.", 1_765_000_000.25)
        let text = p.render()
        #expect(text == """
            # HELP wal_e_backup_count Complete base backups.
            # TYPE wal_e_backup_count gauge
            wal_e_backup_count{prefix="s3://b/a\\"b\\\\c\\nd"} 3
            # HELP wal_e_x_seconds A time.
            # TYPE wal_e_x_seconds gauge
            wal_e_x_seconds{prefix="s3://b/a\\"b\\\\c\\nd"} 1765000000.25

            """)
        #expect(PrometheusText.value(of: "wal_e_x_seconds", in: text) == 1_765_000_000.25)
        #expect(PrometheusText.value(of: "wal_e_backup_count", in: text) == 3)
        #expect(PrometheusText.value(of: "wal_e_missing", in: text) == nil)
    }
}
