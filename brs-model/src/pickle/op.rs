//! The pickle opcodes this reader runs, by their names in CPython's `pickletools`: those
//! `torch.save` emits with protocols 2 to 5. Any other byte is refused as unsupported.

/// Declares [`Op`] and its decoding from one list, so a name and its byte are written once.
macro_rules! opcodes {
    ($($(#[$doc:meta])* $name:ident = $byte:literal,)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(super) enum Op {
            $($(#[$doc])* $name,)*
        }

        impl Op {
            /// The opcode of `byte`, if this reader knows it.
            pub(super) fn from_byte(byte: u8) -> Option<Op> {
                match byte {
                    $($byte => Some(Op::$name),)*
                    _ => None,
                }
            }
        }
    };
}

opcodes! {
    /// Protocol version (one byte).
    Proto = 0x80,
    /// Frame length (eight bytes); framing is only a read-ahead hint.
    Frame = 0x95,
    /// End of the pickle: the stack's top is the result.
    Stop = b'.',

    // The stack and its marks.
    Mark = b'(',
    Pop = b'0',
    PopMark = b'1',
    Dup = b'2',

    // Constants and literals, pushed as read.
    None = b'N',
    NewTrue = 0x88,
    NewFalse = 0x89,
    /// Signed 4-byte int.
    BinInt = b'J',
    /// Unsigned 1-byte int.
    BinInt1 = b'K',
    /// Unsigned 2-byte int.
    BinInt2 = b'M',
    /// Integer of a 1-byte length.
    Long1 = 0x8a,
    /// Integer of a 4-byte length.
    Long4 = 0x8b,
    /// Big-endian f64.
    BinFloat = b'G',
    BinUnicode = b'X',
    ShortBinUnicode = 0x8c,
    BinUnicode8 = 0x8d,
    /// Python 2 `str` (4-byte length).
    BinString = b'T',
    /// Python 2 `str` (1-byte length).
    ShortBinString = b'U',
    BinBytes = b'B',
    ShortBinBytes = b'C',
    BinBytes8 = 0x8e,
    ByteArray8 = 0x96,

    // Containers, built empty or from the items above the innermost mark.
    EmptyTuple = b')',
    Tuple = b't',
    Tuple1 = 0x85,
    Tuple2 = 0x86,
    Tuple3 = 0x87,
    EmptyList = b']',
    List = b'l',
    EmptyDict = b'}',
    Dict = b'd',
    EmptySet = 0x8f,
    FrozenSet = 0x91,

    // Filling the container under the pushed items.
    Append = b'a',
    Appends = b'e',
    AddItems = 0x90,
    SetItem = b's',
    SetItems = b'u',

    // The memo.
    BinPut = b'q',
    LongBinPut = b'r',
    Memoize = 0x94,
    BinGet = b'h',
    LongBinGet = b'j',

    // Objects: globals from the allow-list, calls of them, and torch's storages.
    /// Module and name as two text lines.
    Global = b'c',
    /// Module and name from the stack.
    StackGlobal = 0x93,
    Reduce = b'R',
    NewObj = 0x81,
    NewObjEx = 0x92,
    Build = b'b',
    /// A persistent id: how torch.save refers to a storage.
    BinPersId = b'Q',
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_pickles_bytes() {
        // A few bytes straight from CPython's pickle.py, and bytes it never assigned.
        assert_eq!(Op::from_byte(b'q'), Some(Op::BinPut));
        assert_eq!(Op::from_byte(0x94), Some(Op::Memoize));
        assert_eq!(Op::from_byte(b'.'), Some(Op::Stop));
        assert_eq!(Op::from_byte(0x85), Some(Op::Tuple1));
        // INST and OBJ (protocol 0/1 object building) are deliberately unknown.
        assert_eq!(Op::from_byte(b'i'), None);
        assert_eq!(Op::from_byte(b'o'), None);
        assert_eq!(Op::from_byte(0xff), None);
    }
}
