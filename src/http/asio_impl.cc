// Asio and Beast in separate-compilation mode: their out-of-line code is compiled once, here,
// instead of in every translation unit that includes them (~25 s each). The
// BOOST_ASIO_SEPARATE_COMPILATION / BOOST_BEAST_SEPARATE_COMPILATION defines travel with the
// stratus_asio target.
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
