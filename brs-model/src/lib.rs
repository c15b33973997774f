//! U-GAT-IT networks.
