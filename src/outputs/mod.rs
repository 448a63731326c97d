//! What callers do with accepted files: developed RAW images, typed tensor data, and views in
//! other libraries' types (ndarray, candle). Nothing here reads untrusted bytes that a guest did
//! not already check.

#[cfg(feature = "candle")]
pub(crate) mod candle;
pub(crate) mod develop;
#[cfg(feature = "ndarray")]
pub(crate) mod ndarray_view;
pub(crate) mod postprocess;
pub(crate) mod tensor_data;
