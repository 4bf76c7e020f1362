import Testing
@testable import WALECore

@Suite struct LSNTests {
    @Test func parsesAndPrints() {
        #expect(LSN(parsing: "0/3000028")?.value == 0x300_0028)
        #expect(LSN(parsing: "16/B374D848")?.value == 0x16_B374_D848)
        #expect(LSN(parsing: "16/b374d848")?.description == "16/B374D848")
        for bad in ["", "0", "0/", "/1", "1/2/3", "G/0", "123456789/0", "0/123456789"] {
            #expect(LSN(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test func segmentAndOffset() {
        let lsn = LSN(parsing: "1/2345678")!
        let seg = lsn.segment(timeline: TimelineID(3), size: .default)
        // 0x1_0234_5678 / 16 MiB = segment 0x102: log 1, seg 0x02, offset 0x345678.
        #expect(seg.description == "000000030000000100000002")
        #expect(lsn.offset(in: .default) == 0x34_5678)
        let oneMiB = WALSegmentSize(bytes: 1 << 20)!
        #expect(lsn.segment(timeline: TimelineID(1), size: oneMiB).description == "000000010000000100000023")
        #expect(lsn.offset(in: oneMiB) == 0x4_5678)
    }
}

@Suite struct SegmentNameTests {
    @Test func parsesOnlyUpperCaseHexOf24() {
        let s = WALSegmentName("0000000200000003000000FE")!
        #expect(s.timeline == TimelineID(2) && s.log == 3 && s.seg == 0xFE)
        #expect(s.description == "0000000200000003000000FE")
        #expect(WALSegmentName("0000000200000003000000fe") == nil)
        #expect(WALSegmentName("0000000200000003000000F") == nil)
        #expect(WALSegmentName("0000000200000003000000FEA") == nil)
        #expect(WALSegmentName("00000002000000030000G0FE") == nil)
    }

    @Test func advancesAcrossLogBoundaryForEachSegmentSize() {
        let s16 = WALSegmentName("0000000100000000000000FF")!
        #expect(s16.advanced(by: 1, size: .default).description == "000000010000000100000000")
        #expect(s16.segmentNumber(size: .default) == 0xFF)
        let s1 = WALSegmentName("000000010000000000000FFF")!
        let oneMiB = WALSegmentSize(bytes: 1 << 20)!
        #expect(s1.advanced(by: 1, size: oneMiB).description == "000000010000000100000000")
        #expect(s1.isValid(for: oneMiB) && !s1.isValid(for: .default))
        let oneGiB = WALSegmentSize(bytes: 1 << 30)!
        let g = WALSegmentName("000000010000000500000003")!
        #expect(g.advanced(by: 1, size: oneGiB).description == "000000010000000600000000")
        #expect(g.startLSN(size: oneGiB) == LSN(parsing: "5/C0000000"))
    }

    @Test func segmentSizeMustBeAPowerOfTwoInRange() {
        #expect(WALSegmentSize(bytes: 16 << 20)?.segmentsPerLogID == 256)
        #expect(WALSegmentSize(bytes: 1 << 19) == nil)
        #expect(WALSegmentSize(bytes: 2 << 30) == nil)
        #expect(WALSegmentSize(bytes: 3 << 20) == nil)
    }

    @Test func fileNameKinds() {
        #expect(WALFileName("000000010000000000000001") == .segment(WALSegmentName("000000010000000000000001")!))
        #expect(WALFileName("000000010000000000000005.partial") == .partial(WALSegmentName("000000010000000000000005")!))
        #expect(
            WALFileName("000000010000000000000002.00000028.backup")
                == .backupHistory(WALSegmentName("000000010000000000000002")!, offset: 0x28))
        #expect(WALFileName("0000000A.history") == .history(TimelineID(10)))
        #expect(WALFileName("0000000A.history")?.description == "0000000A.history")
        #expect(WALFileName("000000010000000000000002.00000028.backup")?.description == "000000010000000000000002.00000028.backup")
        for bad in ["RECOVERYXLOG", "00000002.History", "0000000a.history", "000000010000000000000001.lzo", "x.partial",
            "000000010000000000000002.0000028.backup"]
        {
            #expect(WALFileName(bad) == nil, "\(bad)")
        }
        #expect(WALFileName("000000010000000000000005.partial")?.segmentFile != nil)
        #expect(WALFileName("0000000A.history")?.segmentFile == nil)
    }
}

@Suite struct PageHeaderTests {
    static func header(
        magic: UInt16 = 0xD110, info: UInt16 = 2, address: UInt64 = 0x300_0000, segSize: UInt32 = 16 << 20,
        block: UInt32 = 8192
    ) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 40)
        func put(_ v: UInt64, _ o: Int, _ n: Int) { for i in 0..<n { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
        put(UInt64(magic), 0, 2)
        put(UInt64(info), 2, 2)
        put(1, 4, 4)
        put(address, 8, 8)
        put(7_300_000_000, 24, 8)
        put(UInt64(segSize), 32, 4)
        put(UInt64(block), 36, 4)
        return b
    }
    let name = WALSegmentName("000000010000000000000003")!

    @Test func acceptsARealHeader() throws {
        let h = try WALPageHeader.validate(Self.header(), fileSize: 16 << 20, name: name).get()
        #expect(h.postgresVersion == "15" && h.isKnownMagic && h.segmentSize == .default)
        #expect(h.systemIdentifier == 7_300_000_000)
    }

    @Test func rejectsWhatIsNotTheNamedSegment() {
        func problem(_ b: [UInt8], size: UInt64 = 16 << 20) -> WALPageHeader.Problem? {
            if case .failure(let p) = WALPageHeader.validate(b, fileSize: size, name: name) { return p }
            return nil
        }
        #expect(problem(Array(Self.header().prefix(20))) == .tooShort(20))
        #expect(problem(Self.header(magic: 0x1234)) == .badMagic(0x1234))
        #expect(problem(Self.header(info: 0)) == .notLongHeader)
        #expect(problem(Self.header(segSize: 3 << 20)) == .badSegmentSize(3 << 20))
        #expect(problem(Self.header(block: 1000)) == .badBlockSize(1000))
        #expect(problem(Self.header(), size: 8 << 20) == .fileSizeMismatch(fileSize: 8 << 20, headerSegmentSize: 16 << 20))
        #expect(
            problem(Self.header(address: 0x400_0000))
                == .wrongPageAddress(expected: LSN(0x300_0000), found: LSN(0x400_0000)))
    }

    @Test func unknownMagicInPostgresRangeIsValidButFlagged() throws {
        let h = try WALPageHeader.validate(Self.header(magic: 0xD1F0), fileSize: 16 << 20, name: name).get()
        #expect(!h.isKnownMagic)
    }
}
